"""Each reader on small files written in its layout: values, episode structure, metadata."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from builders import d4rl_arrays, make_episode, robomimic_demo, write_d4rl, write_robomimic

from robo_offline.data import DatasetError, detect_format, load_dataset, write_minari_dataset

torch.set_num_threads(1)


# ---------------------------------------------------------------- D4RL layout


def test_d4rl_with_next_observations_keeps_every_row(tmp_path):
    arrays = d4rl_arrays(np.random.default_rng(0))
    path = write_d4rl(tmp_path / "d.hdf5", arrays, attrs={"env_id": "Hopper-v5"})
    data = load_dataset(path)

    assert detect_format(path) == "d4rl"
    assert data.metadata["format"] == "d4rl" and data.metadata["env_id"] == "Hopper-v5"
    for key in ("observations", "next_observations", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(data, key).numpy(), arrays[key])
    np.testing.assert_array_equal(data.terminals.numpy(), arrays["terminals"])
    np.testing.assert_array_equal(data.timeouts.numpy(), arrays["timeouts"])
    assert data.n_episodes == 4
    assert data.episode_ids.tolist() == np.repeat(np.arange(4), 5).tolist()


def test_d4rl_without_next_observations_follows_qlearning_dataset(tmp_path):
    arrays = d4rl_arrays(np.random.default_rng(1))
    del arrays["next_observations"]
    obs = arrays["observations"]
    data = load_dataset(write_d4rl(tmp_path / "d.hdf5", arrays))

    # Episodes: rows 0-4 (timeout), 5-9 (terminal), 10-14, 15-19 (timeouts). Each final
    # timeout row has no next row in its episode and is dropped; the terminal row is kept.
    kept = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18]
    np.testing.assert_array_equal(data.observations.numpy(), obs[kept])
    np.testing.assert_array_equal(data.rewards.numpy(), arrays["rewards"][kept])
    expected_next = obs[[k + 1 for k in kept]]
    expected_next[kept.index(9)] = obs[9]  # a terminal's next observation is its own
    np.testing.assert_array_equal(data.next_observations.numpy(), expected_next)
    # The row before each dropped one now ends its episode, so none runs into the next.
    ends = (data.terminals + data.timeouts).numpy()
    assert np.flatnonzero(ends).tolist() == [3, 8, 12, 16]
    assert data.terminals.numpy()[8] == 1 and data.timeouts.numpy()[8] == 0
    assert data.n_episodes == 4
    assert data.metadata["n_dropped_episode_ends"] == 3


def test_d4rl_file_cut_mid_episode_drops_its_last_row(tmp_path):
    arrays = d4rl_arrays(np.random.default_rng(2), n=7)  # rows 5-6 start an unfinished episode
    arrays.pop("next_observations")
    data = load_dataset(write_d4rl(tmp_path / "d.hdf5", arrays))
    np.testing.assert_array_equal(data.observations.numpy(), arrays["observations"][[0, 1, 2, 3, 5]])
    assert data.timeouts.tolist() == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------- Minari


def _minari_dataset(tmp_path, episodes, **kwargs):
    obs_dim, act_dim = episodes[0].observations.shape[1], episodes[0].actions.shape[1]
    return write_minari_dataset(
        tmp_path / "mds",
        episodes,
        dataset_id="robo-offline/test-expert-v0",
        env_id=None,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        **kwargs,
    )


@pytest.mark.parametrize("which", ["dataset_dir", "data_dir", "hdf5_file"])
def test_minari_reader_accepts_every_path_form(tmp_path, which):
    rng = np.random.default_rng(3)
    episodes = [make_episode(rng, 4, terminated=True), make_episode(rng, 3)]
    root = _minari_dataset(tmp_path, episodes)
    path = {"dataset_dir": root, "data_dir": root / "data", "hdf5_file": root / "data" / "main_data.hdf5"}[which]

    data = load_dataset(path)
    assert data.metadata["format"] == "minari"
    np.testing.assert_array_equal(data.observations.numpy(), np.concatenate([e.observations[:-1] for e in episodes]))
    expected_next = np.concatenate([e.observations[1:] for e in episodes])
    np.testing.assert_array_equal(data.next_observations.numpy(), expected_next)
    np.testing.assert_array_equal(data.actions.numpy(), np.concatenate([e.actions for e in episodes]))
    assert data.terminals.tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert data.timeouts.tolist() == [0, 0, 0, 0, 0, 0, 1]
    np.testing.assert_array_equal(data.metadata["action_high"], np.ones(2))  # bounds from metadata.json


def test_minari_episodes_are_ordered_numerically(tmp_path):
    rng = np.random.default_rng(4)
    episodes = [make_episode(rng, 2) for _ in range(12)]  # episode_10 must follow episode_9
    data = load_dataset(_minari_dataset(tmp_path, episodes))
    np.testing.assert_array_equal(data.rewards.numpy(), np.concatenate([e.rewards for e in episodes]))


def test_minari_dict_observations_concatenate_in_requested_order(tmp_path):
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    rng = np.random.default_rng(5)
    space = gym.spaces.Dict(
        {"joint": gym.spaces.Box(-np.inf, np.inf, (2,)), "goal": gym.spaces.Box(-np.inf, np.inf, (3,))}
    )
    (tmp_path / "dict").mkdir()
    storage = MinariStorage.new(
        tmp_path / "dict" / "data", observation_space=space, action_space=gym.spaces.Box(-1, 1, (1,))
    )
    storage.update_metadata({"dataset_id": "robo-offline/dict-v0", "minari_version": "0.5.4"})
    joint = rng.standard_normal((4, 2)).astype(np.float32)
    goal = rng.standard_normal((4, 3)).astype(np.float32)
    storage.update_episodes(
        [
            EpisodeBuffer(
                observations={"joint": joint, "goal": goal},
                actions=np.zeros((3, 1), np.float32),
                rewards=np.ones(3),
                terminations=np.array([False, False, True]),
                truncations=np.zeros(3, bool),
            )
        ]
    )
    default = load_dataset(tmp_path / "dict")
    assert default.metadata["obs_keys"] == ["goal", "joint"]  # sorted
    assert default.metadata["obs_layout"] == [["goal", 3], ["joint", 2]]  # saved with the run and exported file
    np.testing.assert_array_equal(default.observations.numpy(), np.concatenate([goal, joint], axis=1)[:-1])

    chosen = load_dataset(tmp_path / "dict", obs_keys=["joint", "goal"], observation_space=space)
    np.testing.assert_array_equal(chosen.next_observations.numpy(), np.concatenate([joint, goal], axis=1)[1:])
    assert chosen.metadata["obs_layout"] == [["joint", 2], ["goal", 3]]

    joint_only = load_dataset(tmp_path / "dict", obs_keys=["joint"])
    assert joint_only.obs_dim == 2
    with pytest.raises(DatasetError, match="available"):
        load_dataset(tmp_path / "dict", obs_keys=["velocity"])


# ---------------------------------------------------------------- robomimic


def test_robomimic_reader_with_obs_keys(tmp_path):
    rng = np.random.default_rng(6)
    demos = [robomimic_demo(rng, 4, done=True), robomimic_demo(rng, 3, done=False)]
    path = write_robomimic(tmp_path / "r.hdf5", demos)
    data = load_dataset(path, obs_keys=["gripper", "eef_pos"])

    assert detect_format(path) == "robomimic"
    assert data.metadata["env_id"] == "Lift" and data.metadata["obs_keys"] == ["gripper", "eef_pos"]
    assert data.metadata["obs_layout"] == [["gripper", 2], ["eef_pos", 3]]

    def flat(part):
        return np.concatenate([np.concatenate([d[part]["gripper"], d[part]["eef_pos"]], axis=1) for d in demos])

    expected_obs, expected_next = flat("obs"), flat("next_obs")
    np.testing.assert_array_equal(data.observations.numpy(), expected_obs)
    np.testing.assert_array_equal(data.next_observations.numpy(), expected_next)
    np.testing.assert_allclose(data.rewards.numpy(), np.concatenate([d["rewards"] for d in demos]), rtol=1e-6)
    assert data.terminals.tolist() == [0, 0, 0, 1, 0, 0, 0]  # dones are terminals
    assert data.timeouts.tolist() == [0, 0, 0, 0, 0, 0, 1]  # an undone final step is a timeout
    assert data.n_episodes == 2


def test_robomimic_requires_obs_keys_when_several(tmp_path):
    path = write_robomimic(tmp_path / "r.hdf5", [robomimic_demo(np.random.default_rng(7), 3, done=True)])
    with pytest.raises(DatasetError) as err:
        load_dataset(path)
    assert str(path) in str(err.value) and "eef_pos" in str(err.value) and "gripper" in str(err.value)
    assert err.value.key == "data/demo_0/obs"


def test_robomimic_single_key_needs_no_obs_keys(tmp_path):
    demo = robomimic_demo(np.random.default_rng(8), 3, done=True)
    for part in ("obs", "next_obs"):
        del demo[part]["gripper"]
    data = load_dataset(write_robomimic(tmp_path / "r.hdf5", [demo]))
    np.testing.assert_array_equal(data.observations.numpy(), demo["obs"]["eef_pos"])


def test_named_format_overrides_detection(tmp_path):
    path = write_robomimic(tmp_path / "r.hdf5", [robomimic_demo(np.random.default_rng(9), 3, done=True)])
    with pytest.raises(DatasetError) as err:
        load_dataset(path, format="d4rl")
    assert err.value.key == "observations"
    with pytest.raises(ValueError, match="unknown dataset format"):
        load_dataset(path, format="parquet")
