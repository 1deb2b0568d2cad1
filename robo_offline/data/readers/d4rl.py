"""Reader for D4RL-layout HDF5: one flat array per field at the top level of the file."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np

from robo_offline.data.errors import DatasetError
from robo_offline.data.hdf5_io import as_bool, as_float32, as_rows, read_array
from robo_offline.data.raw import RawTransitions, timeouts_at_gaps

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def looks_like_d4rl(handle: h5py.File) -> bool:
    return isinstance(handle.get("observations"), h5py.Dataset) and isinstance(handle.get("actions"), h5py.Dataset)


def read_d4rl(handle: h5py.File, path: str, obs_keys: list[str] | None = None) -> RawTransitions:
    """Read a D4RL-layout file; episode boundaries are `terminals | timeouts`.

    Without `next_observations` the next observation is the following row, as in D4RL's
    `qlearning_dataset`: an episode's final row is dropped unless it is terminal (there is no
    following row of the same episode), and a terminal's next observation is its own, since
    bootstrapping never reads it.
    """
    if obs_keys is not None:
        raise ValueError(f"{path}: obs_keys only applies to minari and robomimic datasets (D4RL observations are flat)")
    keys = [*REQUIRED_KEYS, "next_observations"] if "next_observations" in handle else REQUIRED_KEYS
    arrays = {key: read_array(handle, key, path) for key in keys}
    metadata = _file_attributes(handle)
    _check_lengths(path, arrays)

    observations = as_float32(as_rows(arrays["observations"]))
    has_next = "next_observations" in arrays
    raw = RawTransitions(
        path=str(path),
        format="d4rl",
        observations=observations,
        actions=as_float32(as_rows(arrays["actions"])),
        rewards=as_float32(arrays["rewards"].reshape(-1)),
        next_observations=as_float32(as_rows(arrays["next_observations"])) if has_next else observations,
        terminals=as_bool(arrays["terminals"]),
        timeouts=as_bool(arrays["timeouts"]),
        source_keys={name: name for name in arrays},
        metadata=metadata,
    )
    if not has_next:
        raw = _derive_next_observations(raw)
    raw.metadata.setdefault("n_dropped_episode_ends", 0)
    return raw


def _check_lengths(path: str, arrays: dict[str, np.ndarray]) -> None:
    n = arrays["observations"].shape[0]
    for key, array in arrays.items():
        if array.shape[0] != n:
            raise DatasetError(path, key, f"has {array.shape[0]} rows but 'observations' has {n}")
    if n == 0:
        raise DatasetError(path, "observations", "contains zero transitions")


def _derive_next_observations(raw: RawTransitions) -> RawTransitions:
    """Next observation = the following row; drop final non-terminal rows, which have none."""
    no_successor = raw.timeouts & ~raw.terminals
    no_successor[-1] |= not raw.terminals[-1]  # a file cut mid-episode: its last row has no next row
    keep = ~no_successor
    kept_rows = np.flatnonzero(keep)
    if kept_rows.size == 0:
        raise DatasetError(raw.path, "observations", "no transition has a next observation (add next_observations)")
    successors = kept_rows + 1
    successors[-1] = min(successors[-1], len(raw) - 1)  # only a terminal can be kept last; see below
    next_observations = np.take(raw.observations, successors, axis=0)
    observations = np.compress(keep, raw.observations, axis=0)
    terminals = raw.terminals[keep]
    terminal_rows = np.flatnonzero(terminals)
    next_observations[terminal_rows] = observations[terminal_rows]  # own observation; never bootstrapped
    raw.source_keys["next_observations"] = "observations"
    raw.metadata["n_dropped_episode_ends"] = len(raw) - len(kept_rows)
    return replace(
        raw,
        observations=observations,
        next_observations=next_observations,
        actions=np.compress(keep, raw.actions, axis=0),
        rewards=raw.rewards[keep],
        terminals=terminals,
        timeouts=timeouts_at_gaps(raw.terminals, raw.timeouts, no_successor)[keep],
    )


def _file_attributes(handle: h5py.File) -> dict:
    """Environment id and action bounds where the file records them as root attributes."""
    attrs = dict(handle.attrs)
    metadata: dict = {}
    for name in ("env_id", "env_name", "env"):
        if name in attrs:
            metadata["env_id"] = _as_str(attrs[name])
            break
    for name in ("action_low", "action_high"):
        if name in attrs:
            metadata[name] = np.asarray(attrs[name], dtype=np.float64).reshape(-1)
    return metadata


def _as_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
