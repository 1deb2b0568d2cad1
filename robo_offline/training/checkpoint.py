"""Checkpoint files: written atomically and durably, read without running code from the file.

A write goes to a temporary file that is fsynced and renamed over `last.pt`, then the directory is
fsynced: a run killed (or a machine that loses power) mid-write keeps its last good checkpoint.
Reading uses `torch.load(weights_only=True)`, which only rebuilds tensors and plain containers, so
a checkpoint received from someone else cannot execute code. numpy arrays in the state (RNG and
simulator states) are stored as tagged tensors for that reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pt"
FORMAT_VERSION = 1  # raise when a change makes older readers misread new checkpoints
_NDARRAY = "__ndarray__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names the file and what was expected."""


class StorageError(OSError):
    """A run's file could not be written (disk full, permissions); what was written before is intact."""


def save_checkpoint(state: dict[str, Any], directory: Path, step: int, keep_every: bool = False) -> Path:
    """Write `last.pt` (and `step_<n>.pt` when keep_every) via an fsynced temporary file + rename."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp, last = directory / f".{LAST}.tmp", directory / LAST
    try:
        with open(tmp, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **_encode(state)}, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_every:
            os.link(tmp, directory / f"step_{step:08d}.pt")
        os.replace(tmp, last)
        _fsync_directory(directory)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        kept = f"the last good checkpoint {last} is kept" if last.is_file() else "no checkpoint had been written yet"
        raise StorageError(
            err.errno, f"could not write the checkpoint at step {step} to {directory} ({os_error_reason(err)}); {kept}"
        ) from err
    return last


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint's state; any file that is not a readable robo-offline checkpoint raises CheckpointError."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        where = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        raise CheckpointError(f"no checkpoint at {path}: {where} holds no finished checkpoint of a run")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (a write that never finished?); expected a robo-offline checkpoint")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):  # format 0 pickled numpy arrays
            state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        unsafe = _unsafe_globals(path) if isinstance(err, pickle.UnpicklingError) else []
        if unsafe:
            raise CheckpointError(
                f"{path} holds Python objects that loading would have to run ({', '.join(unsafe)}); "
                "robo-offline only loads checkpoints of tensors and plain values, so it was not loaded"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({_first_line(err)}): truncated, corrupt or not written "
            "by torch.save; resume from another checkpoint or start the run again"
        ) from None
    if not isinstance(state, dict) or not {"step", "algo"} <= state.keys():
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a robo-offline checkpoint: expected 'step' and 'algo' entries, found {found}"
        )
    version = state.pop("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}; this robo-offline reads formats up to {FORMAT_VERSION}: "
            "update robo-offline to load it"
        )
    return _decode(state)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _encode(value: Any) -> Any:
    """numpy arrays as tagged tensors and numpy scalars as Python numbers, so weights-only loading accepts them."""
    if isinstance(value, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(v) for v in value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if value.keys() == {_NDARRAY}:
            return value[_NDARRAY].cpu().numpy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v) for v in value)
    return value


def _numpy_array_globals() -> list:
    """What unpickling a numeric numpy array needs (no object arrays): data only, no code paths."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    kinds = getattr(np, "dtypes", None)  # numpy >= 1.25
    unsafe = {getattr(kinds, "ObjectDType", None), getattr(kinds, "StringDType", None)}
    dtypes = [getattr(kinds, n) for n in dir(kinds) if n.endswith("DType")] if kinds else []
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *(d for d in dtypes if d not in unsafe)]


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - only used to word the error
        return []


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(err).__name__


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def os_error_reason(err: OSError) -> str:
    return "disk full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
