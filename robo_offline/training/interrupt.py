"""Ctrl-C and preemption (SIGINT, SIGTERM) stop training at the end of the current step with a checkpoint.

The handler only records the request: the loop finishes the update it is in, writes a checkpoint
and raises `TrainingInterrupted`. A second signal while that happens is reported and ignored, so
the checkpoint write is never cut short; a third stops at once (the write is atomic: the previous
checkpoint is then kept).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after checkpointing the step it had finished."""

    def __init__(self, signame: str, step: int, checkpoint: Path):
        self.signame, self.step, self.checkpoint = signame, step, checkpoint
        super().__init__(f"{signame}: stopped after step {step}; checkpoint written to {checkpoint}")

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent.parent  # <run>/checkpoints/last.pt

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by this signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(getattr(signal, self.signame))


class StopRequest:
    """Set by the signal handler; read by the loop once per step (a Python attribute, no syscall)."""

    def __init__(self):
        self.signame: str | None = None
        self.count = 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            self.signame = signal.Signals(signum).name
            print(f"\n{self.signame}: stopping after this step and writing a checkpoint ...", file=sys.stderr)
        elif self.count == 2:
            print("already stopping: the checkpoint is being written (signal again to abort)", file=sys.stderr)
        else:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Route SIGINT/SIGTERM to a `StopRequest` for the block (main thread only; elsewhere nothing changes)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
