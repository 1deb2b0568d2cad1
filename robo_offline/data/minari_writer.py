"""`write_minari_dataset`: rollouts to Minari's on-disk layout, through Minari's own storage."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from sim.episode import Episode

# Keys Minari owns in metadata.json; extra_metadata may not overwrite them.
_RESERVED_KEYS = frozenset(
    {
        "dataset_id", "minari_version", "env_spec", "eval_env_spec", "observation_space", "action_space",
        "data_format", "jpeg_encoding", "total_episodes", "total_steps", "dataset_size", "algorithm_name",
        "description", "ref_min_score", "ref_max_score", "episode_success", "author", "author_email",
        "code_permalink", "combined_datasets", "requirements",
    }
)  # fmt: skip


def write_minari_dataset(
    path: str | os.PathLike,
    episodes: Sequence[Episode],
    *,
    dataset_id: str,
    env_id: str | None,
    observation_space: gym.Space,
    action_space: gym.Space,
    algorithm_name: str | None = None,
    description: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    extra_metadata: dict | None = None,
) -> Path:
    """Write `episodes` as a Minari dataset at `path` (`path/data/{main_data.hdf5,metadata.json}`).

    `minari.MinariDataset(path / "data")` opens the result, and so does `load_dataset(path)`.
    `dataset_id` must be a versioned Minari id such as "robo-offline/pusher-expert-v0". The
    reference scores, per-episode success (`episode_success`, None where unknown) and
    `extra_metadata` (JSON-able; e.g. a quality level) go into metadata.json. Image spaces are
    stored losslessly (no JPEG). Returns `path`.
    """
    from minari import __version__ as minari_version  # deferred: importing minari is slow
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    _check_dataset_id(dataset_id)
    if not episodes:
        raise ValueError("write_minari_dataset needs at least one episode")
    extras = _jsonable(dict(extra_metadata or {}))
    clashes = _RESERVED_KEYS & extras.keys()
    if clashes:
        raise ValueError(f"extra_metadata may not set Minari's own keys: {sorted(clashes)}")

    root = Path(path).resolve()  # minari's storage mis-joins relative paths
    data_dir = root / "data"
    if (data_dir / "metadata.json").exists():
        raise FileExistsError(f"{data_dir} already holds a Minari dataset; delete it or choose another path")
    data_dir.mkdir(parents=True, exist_ok=True)

    lossless = "jpeg_encoding" in inspect.signature(MinariStorage.new).parameters  # minari >= 0.5.4
    storage_options = {"jpeg_encoding": False} if lossless else {}
    storage = MinariStorage.new(
        data_dir,
        observation_space=observation_space,
        action_space=action_space,
        env_spec=_env_spec(env_id),
        **storage_options,
    )
    metadata = {
        "dataset_id": dataset_id,
        "minari_version": minari_version,
        "episode_success": [None if ep.success is None else bool(ep.success) for ep in episodes],
        **extras,
    }
    for key, value in (("algorithm_name", algorithm_name), ("description", description)):
        if value is not None:
            metadata[key] = str(value)
    for key, value in (("ref_min_score", ref_min_score), ("ref_max_score", ref_max_score)):
        if value is not None:
            metadata[key] = float(value)
    storage.update_metadata(metadata)
    storage.update_episodes(
        EpisodeBuffer(
            id=index,
            observations=np.asarray(ep.observations),
            actions=np.asarray(ep.actions),
            rewards=np.asarray(ep.rewards),
            terminations=np.asarray(ep.terminations, dtype=bool),
            truncations=np.asarray(ep.truncations, dtype=bool),
            infos={key: np.asarray(value) for key, value in ep.infos.items()} or None,
        )
        for index, ep in enumerate(episodes)
    )
    return root


def _check_dataset_id(dataset_id: str) -> None:
    """Minari ids are `(namespace/)name-vN`; its parser crashes on a missing version, so check first."""
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id)
    if match is None or match.group("version") is None:
        raise ValueError(
            f"invalid Minari dataset id {dataset_id!r}: expected (namespace/)name-vN, "
            "e.g. 'robo-offline/pusher-expert-v0'"
        )


def _env_spec(env_id: str | None) -> gym.envs.registration.EnvSpec | None:
    """The registered spec for `env_id`, or a bare one recording just the id when unregistered."""
    if env_id is None:
        return None
    try:
        return gym.spec(env_id)
    except gym.error.Error:  # minari can then read the id but not recreate the environment
        return gym.envs.registration.EnvSpec(id=env_id, entry_point=None)


def _jsonable(value):
    """numpy scalars and arrays (which json rejects) as Python numbers and lists, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
