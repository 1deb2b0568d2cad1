"""Thin h5py wrappers that turn every low-level failure into a `DatasetError`.

h5py reports a missing key as KeyError and a corrupt or truncated file as OSError, neither of
which says which file was involved; every read in the data layer goes through here instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from robo_offline.data.errors import DatasetError


@contextmanager
def open_hdf5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open `path` read-only; a missing, non-HDF5, truncated or corrupt file is a DatasetError."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, None, "file does not exist")
    if not path.is_file():
        raise DatasetError(path, None, "is not a file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(path, None, f"not a readable HDF5 file (truncated or not HDF5?): {err}") from err
    try:
        with handle:
            yield handle
    except (OSError, RuntimeError) as err:  # lazily surfaced corruption, e.g. a truncated data block
        raise DatasetError(path, None, f"HDF5 read failed (file truncated or corrupt?): {err}") from err


def get_node(group: h5py.Group, key: str, path: str | os.PathLike) -> h5py.Dataset | h5py.Group:
    """`group[key]`, with a DatasetError listing what *is* there when the key is missing."""
    try:
        return group[key]
    except KeyError:
        available = ", ".join(sorted(group.keys())[:20]) or "nothing"
        raise DatasetError(path, _full_key(group, key), f"missing key (found: {available})") from None
    except OSError as err:
        raise DatasetError(path, _full_key(group, key), f"unreadable (file truncated or corrupt?): {err}") from err


def read_array(group: h5py.Group, key: str, path: str | os.PathLike) -> np.ndarray:
    """Read the whole dataset `group[key]` with a single `[()]` (the fastest h5py read)."""
    node = get_node(group, key, path)
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(path, _full_key(group, key), "expected an array, found a group")
    try:
        array = node[()]
    except OSError as err:
        raise DatasetError(path, _full_key(group, key), f"unreadable (file truncated or corrupt?): {err}") from err
    if not isinstance(array, np.ndarray) or array.ndim == 0:
        raise DatasetError(path, _full_key(group, key), "expected an array with one row per step, found a scalar")
    if array.dtype.kind not in "biuf":
        raise DatasetError(path, _full_key(group, key), f"unsupported dtype {array.dtype} (encoded images or strings?)")
    return array


def read_flat_group(group: h5py.Group, keys: list[str], path: str | os.PathLike) -> np.ndarray:
    """Read `keys` of `group` as (rows, -1) float32 blocks and concatenate them along the feature axis."""
    blocks = [as_rows(read_array(group, key, path)) for key in keys]
    first = blocks[0].shape[0]
    for key, block in zip(keys, blocks):
        if block.shape[0] != first:
            raise DatasetError(
                path, _full_key(group, key), f"has {block.shape[0]} rows but {_full_key(group, keys[0])!r} has {first}"
            )
    if len(blocks) == 1:
        return as_float32(blocks[0])
    return np.concatenate(blocks, axis=1, dtype=np.float32)


def key_widths(group: h5py.Group, keys: list[str]) -> list[list]:
    """`[key, features]` of each key as `read_flat_group` lays them out (the observation's layout)."""
    return [[key, int(np.prod(group[key].shape[1:], dtype=int))] for key in keys]


def leaf_keys(group: h5py.Group) -> list[str]:
    """Relative paths of every dataset below `group`, naturally sorted ("a/x_2" before "a/x_10")."""
    keys: list[str] = []
    for name in natural_sorted(group.keys()):
        node = group[name]
        if isinstance(node, h5py.Group):
            keys.extend(f"{name}/{sub}" for sub in leaf_keys(node))
        else:
            keys.append(name)
    return keys


def natural_sorted(names) -> list[str]:
    """Sort names with embedded integers numerically, so episode_10 follows episode_9."""
    return sorted(names, key=lambda name: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)])


def as_rows(array: np.ndarray) -> np.ndarray:
    """View an array as (rows, features); a 1-D array is one feature per row. No copy."""
    if array.ndim == 1:
        return array.reshape(-1, 1)
    if array.ndim == 2:
        return array
    return array.reshape(array.shape[0], -1)


def as_float32(array: np.ndarray) -> np.ndarray:
    """Float32 C-contiguous array, copying only when the stored dtype or layout differs."""
    return np.ascontiguousarray(array, dtype=np.float32)


def as_bool(array: np.ndarray) -> np.ndarray:
    """Flags stored as bool, int or float (any non-zero is set), flattened to (rows,)."""
    flat = array.reshape(array.shape[0], -1)[:, 0] if array.ndim > 1 else array
    return flat if flat.dtype == np.bool_ else flat != 0


def _full_key(group: h5py.Group, key: str) -> str:
    prefix = group.name.strip("/") if group.name else ""
    return f"{prefix}/{key}" if prefix else key
