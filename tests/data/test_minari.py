"""`write_minari_dataset` produces datasets that minari itself opens, and that load back exactly."""

from __future__ import annotations

import json

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from builders import make_episode

from robo_offline.data import load_dataset, write_minari_dataset

torch.set_num_threads(1)

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.fixture()
def episodes():
    rng = np.random.default_rng(0)
    eps = [make_episode(rng, 5, 4, terminated=True, success=True), make_episode(rng, 7, 4, success=False)]
    eps[0].infos["distance"] = np.linspace(1, 0, 5).astype(np.float32)
    return eps


def _write(path, episodes, **overrides):
    kwargs = dict(
        dataset_id="robo-offline/pusher-expert-v0",
        env_id="Pusher-v5",
        observation_space=OBS_SPACE,
        action_space=ACT_SPACE,
        algorithm_name="scripted-expert",
        description="test rollouts",
        ref_min_score=-10.0,
        ref_max_score=5.0,
        extra_metadata={"quality": "expert", "seed_list": np.arange(3)},
    )
    kwargs.update(overrides)
    return write_minari_dataset(path, episodes, **kwargs)


def test_minari_opens_the_written_dataset(tmp_path, episodes):
    root = _write(tmp_path / "pusher", episodes)
    dataset = minari.MinariDataset(f"{root}/data")

    assert dataset.spec.dataset_id == "robo-offline/pusher-expert-v0"
    assert dataset.total_episodes == 2 and dataset.total_steps == 12
    assert dataset.env_spec.id == "Pusher-v5"
    assert dataset.action_space == ACT_SPACE
    for written, read in zip(episodes, dataset.iterate_episodes()):
        np.testing.assert_array_equal(read.observations, written.observations)
        np.testing.assert_array_equal(read.actions, written.actions)
        np.testing.assert_array_equal(read.rewards, written.rewards)
        np.testing.assert_array_equal(read.terminations, written.terminations)
        np.testing.assert_array_equal(read.truncations, written.truncations)
    np.testing.assert_array_equal(dataset[0].infos["distance"], episodes[0].infos["distance"])
    # minari's own normalisation reads the reference scores we stored
    np.testing.assert_allclose(minari.get_normalized_score(dataset, np.array([-10.0, 5.0])), [0.0, 1.0])

    metadata = dataset.storage.metadata
    assert metadata["algorithm_name"] == "scripted-expert" and metadata["quality"] == "expert"
    assert metadata["episode_success"] == [True, False] and metadata["seed_list"] == [0, 1, 2]


def test_load_dataset_reads_it_back(tmp_path, episodes):
    root = _write(tmp_path / "pusher", episodes)
    data = load_dataset(root, observation_space=OBS_SPACE, action_space=ACT_SPACE)
    np.testing.assert_array_equal(data.observations.numpy(), np.concatenate([e.observations[:-1] for e in episodes]))
    np.testing.assert_array_equal(data.rewards.numpy(), np.concatenate([e.rewards for e in episodes]))
    assert data.metadata["env_id"] == "Pusher-v5"
    assert data.metadata["dataset_id"] == "robo-offline/pusher-expert-v0"
    assert data.metadata["ref_max_score"] == 5.0 and data.metadata["episode_success"] == [True, False]
    assert data.metadata["file_metadata"]["quality"] == "expert"


def test_unregistered_env_id_is_recorded(tmp_path, episodes):
    root = _write(tmp_path / "custom", episodes, env_id="RoboOfflineNotRegistered-v0")
    assert minari.MinariDataset(f"{root}/data").env_spec.id == "RoboOfflineNotRegistered-v0"
    assert load_dataset(root).metadata["env_id"] == "RoboOfflineNotRegistered-v0"


def test_without_env_and_optional_fields(tmp_path, episodes):
    root = write_minari_dataset(
        tmp_path / "bare",
        episodes,
        dataset_id="bare-v1",
        env_id=None,
        observation_space=OBS_SPACE,
        action_space=ACT_SPACE,
    )
    metadata = json.loads((root / "data" / "metadata.json").read_text())
    assert "env_spec" not in metadata and "ref_min_score" not in metadata
    assert minari.MinariDataset(root / "data").total_episodes == 2


@pytest.mark.parametrize("bad_id", ["pusher-expert", "robo offline/pusher-v0", ""])
def test_rejects_invalid_dataset_ids(tmp_path, episodes, bad_id):
    with pytest.raises(ValueError, match="dataset id"):
        _write(tmp_path / "x", episodes, dataset_id=bad_id)


def test_refuses_to_overwrite_and_reserved_extras(tmp_path, episodes):
    _write(tmp_path / "once", episodes)
    with pytest.raises(FileExistsError):
        _write(tmp_path / "once", episodes)
    with pytest.raises(ValueError, match="dataset_id"):
        _write(tmp_path / "twice", episodes, extra_metadata={"dataset_id": "other-v0"})
