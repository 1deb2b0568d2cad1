"""A run directory belongs to one run: names that cannot collide, and a lock held while the run lives.

Generated names end in a timestamp and a random suffix and are created with an exclusive `mkdir`,
so runs started in the same second (a shell loop with `&`, a job array) never share a directory.
The lock is an `flock` on `<run>/run.lock`, which the kernel drops when its process dies: a second
process that would write into a live run is refused with the holder's pid, host and start time,
and the lock file left by a killed run is taken over. Where the filesystem has no `flock`, the
holder's pid is checked instead (same host only).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from robo_offline.training.checkpoint import LAST

try:
    import fcntl
except ImportError:  # Windows: the pid check below is used instead
    fcntl = None

LOCK_FILE = "run.lock"
METRIC_FILES = ("train.csv", "eval.csv")  # training.metrics' streams


class RunDirError(RuntimeError):
    """The run directory is in use by another process, or holds a run that a fresh start would overwrite."""


def unique_run_dir(parent: Path, stem: str) -> Path:
    """Create and return `parent/<stem>-<YYYYmmdd-HHMMSS>-<6 hex>`; exclusive, so no two callers get one."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def seed_run_dir(run_dir: Path, seed: int) -> Path:
    """Where a seed batch (`train.seeds`) in `run_dir` writes seed `seed`'s own run."""
    return Path(run_dir) / f"seed_{seed}"


@contextlib.contextmanager
def owned_run_dir(path: Path, *, resume: bool) -> Iterator[Path]:
    """Lock `path` for the block. A fresh run may not start where a run already wrote a checkpoint; a resumed
    one needs that checkpoint (checked when it is loaded)."""
    path = Path(path)
    if resume and not path.is_dir():
        raise RunDirError(f"{path} does not exist; --resume takes the directory of an earlier run")
    path.mkdir(parents=True, exist_ok=True)
    with RunLock(path):
        if not resume and (path / "checkpoints" / LAST).exists():
            raise RunDirError(
                f"{path} already holds a run (checkpoints/{LAST}); continue it with --resume {path}, "
                "or choose another run_dir"
            )
        if not resume and (path / "config.yaml").is_file():  # a run killed before its first checkpoint:
            for stale in METRIC_FILES:  # its metric rows would otherwise precede this run's
                (path / stale).unlink(missing_ok=True)
        yield path


class RunLock:
    """An exclusive, process-lifetime lock on a run directory, naming its holder in `run.lock`."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        self.took_over: dict | None = None  # the stale holder's record, when a dead run's lock was taken over

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            previous = _read_holder(fd)
            if not _try_lock(fd, previous):
                raise RunDirError(
                    f"{self.path.parent} is in use by another run ({_describe(previous)}); wait for it "
                    "to finish or stop it, or choose another run_dir"
                )
            self.took_over = previous if previous and previous.get("pid") != os.getpid() else None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder()).encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if self.took_over:
            print(
                f"{self.path.parent}: took over the lock of a run that is gone ({_describe(self.took_over)})",
                file=sys.stderr,
            )

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds the run
        os.close(self._fd)  # closing drops the flock
        self._fd = None


def _try_lock(fd: int, previous: dict | None) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # no flock on this filesystem: fall back to the pid check
            pass
    return not (previous and previous.get("host") == socket.gethostname() and _alive(previous.get("pid")))


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(sys.argv),
    }


def _read_holder(fd: int) -> dict | None:
    raw = os.pread(fd, 1 << 16, 0)
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: {holder.get('command')}"
