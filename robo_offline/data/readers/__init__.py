"""File-format readers; each turns one on-disk layout into `RawTransitions`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py

from robo_offline.data.errors import DatasetError
from robo_offline.data.hdf5_io import open_hdf5
from robo_offline.data.raw import RawTransitions
from robo_offline.data.readers.d4rl import looks_like_d4rl, read_d4rl
from robo_offline.data.readers.minari import MAIN_FILE, looks_like_minari, minari_main_file, read_minari
from robo_offline.data.readers.robomimic import looks_like_robomimic, read_robomimic

FORMATS = ("d4rl", "minari", "robomimic")

_FROM_HANDLE: dict[str, Callable[..., RawTransitions]] = {
    "d4rl": read_d4rl,
    "minari": read_minari,
    "robomimic": read_robomimic,
}


def detect_format(path: str | Path) -> str:
    """Name the layout of `path` from its structure (directories are Minari datasets)."""
    path = Path(path)
    with open_hdf5(minari_main_file(path) if path.is_dir() else path) as handle:
        return _layout_of(handle, path)


def read_raw(path: str | Path, format: str = "auto", obs_keys: list[str] | None = None) -> RawTransitions:
    """Read `path` in the named (or detected) format, before any validation; opens the file once."""
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; expected 'auto' or one of {FORMATS}")
    path = Path(path)
    hdf5_file = minari_main_file(path) if path.is_dir() or format == "minari" else path
    with open_hdf5(hdf5_file) as handle:
        fmt = _layout_of(handle, path) if format == "auto" else format
        return _FROM_HANDLE[fmt](handle, str(hdf5_file), obs_keys)


def _layout_of(handle: h5py.File, path: Path) -> str:
    if path.is_dir() or looks_like_minari(handle) or Path(handle.filename).name == MAIN_FILE:
        return "minari"
    if looks_like_d4rl(handle):
        return "d4rl"
    if looks_like_robomimic(handle):
        return "robomimic"
    keys = sorted(handle.keys())
    if not keys:
        raise DatasetError(path, None, "empty HDF5 file: no datasets or groups")
    raise DatasetError(
        path, None, f"unrecognised layout (top-level keys: {keys[:20]}); expected D4RL, Minari or robomimic"
    )
