"""Metrics files of a run: CSV always (one per stream), TensorBoard when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


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
        if columns is None:
            columns = list(row)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(columns)
        self._columns[stream] = columns
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, columns, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and v is not None:
                    self._tb.add_scalar(f"{stream}/{k}", v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


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
