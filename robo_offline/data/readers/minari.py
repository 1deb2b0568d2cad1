"""Reader for Minari's on-disk layout, straight from the HDF5 file (no environment needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

from robo_offline.data.errors import DatasetError
from robo_offline.data.hdf5_io import (
    as_bool,
    as_float32,
    as_rows,
    get_node,
    key_widths,
    leaf_keys,
    natural_sorted,
    read_array,
    read_flat_group,
)
from robo_offline.data.raw import RawTransitions, concat_episodes

MAIN_FILE = "main_data.hdf5"
METADATA_FILE = "metadata.json"
_EPISODE = re.compile(r"episode_(\d+)")


def minari_main_file(path: str | Path) -> Path:
    """main_data.hdf5 of a dataset directory, of its `data` dir, or the file itself.

    A plain path is returned unchecked: opening it reports a missing file.
    """
    path = Path(path)
    if path.is_dir():
        data_dir = path / "data" if (path / "data").is_dir() else path
        hdf5_file = data_dir / MAIN_FILE
        if not hdf5_file.exists():
            if (data_dir / METADATA_FILE).exists():
                fmt = _read_metadata(data_dir / METADATA_FILE).get("data_format", "unknown")
                problem = f"missing; only Minari's hdf5 data_format is supported (found {fmt!r})"
                raise DatasetError(data_dir, MAIN_FILE, problem)
            raise DatasetError(path, MAIN_FILE, "not found: not a Minari dataset directory")
        return hdf5_file
    return path


def looks_like_minari(handle: h5py.File) -> bool:
    return any(_EPISODE.fullmatch(name) for name in handle.keys())


def read_minari(handle: h5py.File, hdf5_file: Path, obs_keys: list[str] | None = None) -> RawTransitions:
    """Read every `episode_N` (numeric order) of a Minari dataset.

    Episodes store T+1 observations; dict observations are groups whose leaves are flattened
    and concatenated in `obs_keys` order (default: sorted). `metadata.json` next to the file,
    when present, supplies the env id, the action bounds and Minari's reference scores.
    """
    metadata_file = Path(hdf5_file).parent / METADATA_FILE
    file_meta = _read_metadata(metadata_file) if metadata_file.exists() else {}
    names = natural_sorted(name for name in handle.keys() if _EPISODE.fullmatch(name))
    if not names:
        raise DatasetError(hdf5_file, None, "contains no episodes (expected groups named episode_N)")
    selected = _observation_keys(handle[names[0]], hdf5_file, obs_keys)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("obs", "actions", "rewards", "terms", "truncs")}
    for name in names:
        for key, array in _read_episode(handle[name], hdf5_file, selected).items():
            columns[key].append(array)
    lengths = [len(rewards) for rewards in columns["rewards"]]
    metadata = _dataset_metadata(file_meta, metadata_file)
    metadata["obs_keys"] = selected
    if selected is not None:
        metadata["obs_layout"] = key_widths(get_node(handle[names[0]], "observations", hdf5_file), selected)
    return concat_episodes(
        str(hdf5_file),
        "minari",
        columns["obs"],
        columns["actions"],
        columns["rewards"],
        columns["terms"],
        columns["truncs"],
        source_keys={"next_observations": "observations"},
        metadata=metadata,
        segments=(names, lengths),
    )


def _observation_keys(episode: h5py.Group, path: Path, obs_keys: list[str] | None) -> list[str] | None:
    """None for array observations, else the dict leaves to concatenate, validated against the file."""
    node = get_node(episode, "observations", path)
    if isinstance(node, h5py.Dataset):
        if obs_keys is not None:
            problem = "observations are an array; obs_keys cannot select from them"
            raise DatasetError(path, node.name.lstrip("/"), problem)
        return None
    available = leaf_keys(node)
    if obs_keys is None:
        return available
    for key in obs_keys:
        if key not in node:
            problem = f"no such observation key (available: {available})"
            raise DatasetError(path, f"{node.name.lstrip('/')}/{key}", problem)
    return list(obs_keys)


def _read_episode(episode: h5py.Group, path: Path, obs_keys: list[str] | None) -> dict[str, np.ndarray]:
    if obs_keys is None:
        observations = as_float32(as_rows(read_array(episode, "observations", path)))
    else:
        observations = read_flat_group(get_node(episode, "observations", path), obs_keys, path)
    actions_node = get_node(episode, "actions", path)
    if not isinstance(actions_node, h5py.Dataset):
        raise DatasetError(path, actions_node.name.lstrip("/"), "dict/tuple action spaces are not supported")
    arrays = {
        "obs": observations,
        "actions": as_float32(as_rows(read_array(episode, "actions", path))),
        "rewards": as_float32(read_array(episode, "rewards", path).reshape(-1)),
        "terms": as_bool(read_array(episode, "terminations", path)),
        "truncs": as_bool(read_array(episode, "truncations", path)),
    }
    steps = arrays["actions"].shape[0]
    prefix = episode.name.lstrip("/")
    if observations.shape[0] != steps + 1:
        problem = f"has {observations.shape[0]} rows; expected {steps + 1} (T+1 for {steps} actions)"
        raise DatasetError(path, f"{prefix}/observations", problem)
    for key, name in (("rewards", "rewards"), ("terms", "terminations"), ("truncs", "truncations")):
        if arrays[key].shape[0] != steps:
            raise DatasetError(path, f"{prefix}/{name}", f"has {arrays[key].shape[0]} rows but actions has {steps}")
    return arrays


def _read_metadata(metadata_file: Path) -> dict:
    try:
        return json.loads(metadata_file.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(metadata_file, None, f"unreadable Minari metadata: {err}") from err


def _dataset_metadata(file_meta: dict, metadata_file: Path) -> dict:
    """Our metadata from Minari's: env id, action bounds, scores, per-episode success, extras."""
    metadata: dict = {"file_metadata": {k: v for k, v in file_meta.items() if not k.endswith("space")}}
    for key in ("dataset_id", "ref_min_score", "ref_max_score", "algorithm_name", "description", "episode_success"):
        if key in file_meta:
            metadata[key] = file_meta[key]
    env_spec = file_meta.get("env_spec")
    if isinstance(env_spec, str):
        try:
            metadata["env_id"] = json.loads(env_spec)["id"]
        except (ValueError, KeyError, TypeError):
            pass
    for key in ("observation_space", "action_space"):
        if isinstance(file_meta.get(key), str):
            metadata[key] = _deserialize_space(file_meta[key], metadata_file, key)
    action_space = metadata.get("action_space")
    if action_space is not None and hasattr(action_space, "low") and hasattr(action_space, "high"):
        metadata["action_low"] = np.asarray(action_space.low, dtype=np.float64).reshape(-1)
        metadata["action_high"] = np.asarray(action_space.high, dtype=np.float64).reshape(-1)
    return metadata


def _deserialize_space(serialized: str, metadata_file: Path, key: str):
    from minari.serialization import deserialize_space  # deferred: minari's import pulls in its collectors

    try:
        return deserialize_space(serialized)
    except Exception as err:  # noqa: BLE001 - any malformed space is a bad file, reported as such
        raise DatasetError(metadata_file, key, f"cannot deserialise space: {err}") from err
