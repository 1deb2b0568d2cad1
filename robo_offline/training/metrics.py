"""Metrics files of a run: CSV always (one per stream), TensorBoard when it is installed.

Each row is appended with one write; a write that fails (disk full) is cut back to the last whole row
and stops the run with `StorageError`, so a metrics file never holds a torn row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from robo_offline.training.checkpoint import StorageError, os_error_reason

Listener = Callable[[str, int, dict[str, Any]], None]  # (stream, step, row)
_LISTENERS: list[Listener] = []


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener` with every row any run in this process logs while the block runs (a sweep trial reports
    its evaluations to Ray Tune this way, without the training loop knowing about Tune)."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


class MetricsLogger:
    """Appends rows to `<run>/<stream>.csv`; columns are fixed by a stream's first row."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._tb = _tensorboard_writer(run_dir / "tensorboard") if tensorboard else None

    def log(self, stream: str, step: int, values: dict[str, Any]) -> None:
        row = {"step": step, **values}
        path = self.run_dir / f"{stream}.csv"
        columns = self._columns.get(stream) or _existing_columns(path)
        text = io.StringIO()
        if columns is None:
            columns = list(row)
            csv.writer(text).writerow(columns)
        csv.DictWriter(text, columns, extrasaction="ignore").writerow(row)
        _append(path, text.getvalue())
        self._columns[stream] = columns
        for listener in list(_LISTENERS):
            listener(stream, step, values)
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and v is not None:
                    self._tb.add_scalar(f"{stream}/{k}", v, step)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (a killed run's rows past its last checkpoint, which a resume repeats)."""
        for path in self.run_dir.glob("*.csv"):
            with open(path, newline="") as f:
                lines = f.read().splitlines(keepends=True)
            kept = lines[:1] + [line for line in lines[1:] if _row_step(line) <= step]
            if len(kept) < len(lines):
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text("".join(kept))
                os.replace(tmp, path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _append(path: Path, text: str) -> None:
    """Append `text` in one unbuffered write, or leave the file exactly as it was and raise StorageError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            data, done = text.encode(), 0
            while done < len(data):  # a short write (disk filling up) is followed by one that raises
                done += os.write(fd, data[done:])
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise StorageError(
                err.errno, f"could not write {path} ({os_error_reason(err)}); its rows up to now are intact"
            ) from err
    finally:
        os.close(fd)


def _row_step(line: str) -> float:
    try:
        return float(line.split(",", 1)[0])
    except ValueError:  # a torn last line of a killed run
        return float("inf")


def _existing_columns(path: Path) -> list[str] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _tensorboard_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(path))


def read_csv(path: Path) -> dict[str, list[float]]:
    """Columns of a metrics CSV as float lists (empty cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) if r[k] not in ("", "None") else float("nan") for r in rows] for k in rows[0]}
