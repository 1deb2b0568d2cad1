"""Reader for robomimic HDF5: `data/demo_N/{obs,next_obs}/<key>`, `actions`, `rewards`, `dones`."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np

from robo_offline.data.errors import DatasetError
from robo_offline.data.hdf5_io import (
    as_bool,
    as_float32,
    as_rows,
    get_node,
    key_widths,
    natural_sorted,
    read_array,
    read_flat_group,
)
from robo_offline.data.raw import RawTransitions, concat_episodes

_DEMO = re.compile(r"demo_(\d+)")


def looks_like_robomimic(handle: h5py.File) -> bool:
    data = handle.get("data")
    return isinstance(data, h5py.Group) and any(_DEMO.fullmatch(name) for name in data.keys())


def read_robomimic(handle: h5py.File, path: str, obs_keys: list[str] | None = None) -> RawTransitions:
    """Read every demo (numeric order); `dones` are terminals, an undone final step a timeout.

    Observation keys are concatenated in `obs_keys` order; `obs_keys` may be omitted only when
    the file stores a single key, since the right subset (proprio, object, images) is a
    modelling choice the file cannot make.
    """
    data = get_node(handle, "data", path)
    if not isinstance(data, h5py.Group):
        raise DatasetError(path, "data", "expected a group of demos")
    names = natural_sorted(name for name in data.keys() if _DEMO.fullmatch(name))
    if not names:
        raise DatasetError(path, "data", "contains no demos (expected groups named demo_N)")
    selected = _observation_keys(data[names[0]], path, obs_keys)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("obs", "next_obs", "actions", "rewards", "dones")}
    for name in names:
        for key, array in _read_demo(data[name], path, selected).items():
            columns[key].append(array)
    layout = key_widths(get_node(data[names[0]], "obs", path), selected)
    metadata = {"obs_keys": selected, "obs_layout": layout, **_env_metadata(data)}
    return concat_episodes(
        str(path),
        "robomimic",
        columns["obs"],
        columns["actions"],
        columns["rewards"],
        columns["dones"],
        [np.zeros(len(dones), dtype=bool) for dones in columns["dones"]],
        next_observations=columns["next_obs"],
        source_keys={"observations": "obs", "next_observations": "next_obs"},
        metadata=metadata,
        segments=([f"data/{name}" for name in names], [len(dones) for dones in columns["dones"]]),
    )


def _observation_keys(demo: h5py.Group, path: str, obs_keys: list[str] | None) -> list[str]:
    obs = get_node(demo, "obs", path)
    if not isinstance(obs, h5py.Group):
        raise DatasetError(path, obs.name.lstrip("/"), "expected a group of observation keys")
    available = natural_sorted(obs.keys())
    if obs_keys is None:
        if len(available) != 1:
            problem = f"has several observation keys; pass obs_keys, choosing from {available}"
            raise DatasetError(path, obs.name.lstrip("/"), problem)
        return available
    missing = [key for key in obs_keys if key not in obs]
    if missing:
        problem = f"no such observation key (available: {available})"
        raise DatasetError(path, f"{obs.name.lstrip('/')}/{missing[0]}", problem)
    return list(obs_keys)


def _read_demo(demo: h5py.Group, path: str, obs_keys: list[str]) -> dict[str, np.ndarray]:
    arrays = {
        "obs": read_flat_group(get_node(demo, "obs", path), obs_keys, path),
        "next_obs": read_flat_group(get_node(demo, "next_obs", path), obs_keys, path),
        "actions": as_float32(as_rows(read_array(demo, "actions", path))),
        "rewards": as_float32(read_array(demo, "rewards", path).reshape(-1)),
        "dones": as_bool(read_array(demo, "dones", path)),
    }
    steps = arrays["actions"].shape[0]
    names = {"obs": f"obs/{obs_keys[0]}", "next_obs": f"next_obs/{obs_keys[0]}", "rewards": "rewards", "dones": "dones"}
    for key, name in names.items():
        if arrays[key].shape[0] != steps:
            problem = f"has {arrays[key].shape[0]} rows but actions has {steps}"
            raise DatasetError(path, f"{demo.name.lstrip('/')}/{name}", problem)
    return arrays


def _env_metadata(data: h5py.Group) -> dict:
    """robomimic stores `env_args` (JSON with env_name) as an attribute of the `data` group."""
    raw = data.attrs.get("env_args")
    if raw is None:
        return {}
    try:
        env_args = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return {}
    return {"env_id": env_args["env_name"], "env_args": env_args} if "env_name" in env_args else {"env_args": env_args}
