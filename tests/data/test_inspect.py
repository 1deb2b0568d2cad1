"""`inspect_dataset` summarises a file and lists its problems instead of raising on them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from builders import d4rl_arrays, make_episode, write_d4rl

from robo_offline.data import DatasetError, inspect_dataset, write_minari_dataset

torch.set_num_threads(1)


def test_clean_file_statistics(tmp_path):
    arrays = d4rl_arrays(np.random.default_rng(0))
    report = inspect_dataset(write_d4rl(tmp_path / "d.hdf5", arrays, {"env_id": "Hopper-v5"}))

    episode_returns = arrays["rewards"].astype(np.float64).reshape(4, 5).sum(axis=1)
    assert report.ok and report.problems == []
    assert report.format == "d4rl" and report.env_id == "Hopper-v5"
    assert (report.n_transitions, report.n_episodes, report.n_terminals, report.n_timeouts) == (20, 4, 1, 3)
    assert report.return_mean == pytest.approx(episode_returns.mean(), rel=1e-5)
    assert report.return_std == pytest.approx(episode_returns.std(), rel=1e-5)
    assert report.return_min == pytest.approx(episode_returns.min(), rel=1e-5)
    assert report.return_max == pytest.approx(episode_returns.max(), rel=1e-5)
    np.testing.assert_array_equal(report.obs_min, arrays["observations"].min(0))
    np.testing.assert_array_equal(report.action_max, arrays["actions"].max(0))
    assert report.success_rate is None
    text = str(report)
    assert "d4rl" in text and "Hopper-v5" in text and "problems      none" in text and "20 in 4 episodes" in text


def test_problems_are_reported_not_raised(tmp_path):
    arrays = d4rl_arrays(np.random.default_rng(1))
    arrays["observations"][3, 0] = np.nan
    arrays["next_observations"][3, 1] = np.inf  # same transition: counted once in the total
    arrays["rewards"][8] = np.nan
    arrays["actions"][[5, 6], 1] = [1.5, -3.0]
    path = write_d4rl(tmp_path / "bad.hdf5", arrays, {"action_low": [-1.0, -1.0], "action_high": [1.0, 1.0]})

    report = inspect_dataset(path, observation_space=gym.spaces.Box(-1, 1, (5,)))
    assert report.nonfinite_counts == {"observations": 1, "next_observations": 1, "rewards": 1}
    assert report.n_transitions == 18
    assert report.n_out_of_bounds == 2
    assert len(report.problems) == 5 and not report.ok  # 3 non-finite keys, bounds, observation dim
    text = str(report)
    assert "NaN/inf in 'rewards'" in text and "outside the declared bounds" in text and "dimension 3" in text


def test_success_rate_from_minari_metadata(tmp_path):
    rng = np.random.default_rng(2)
    episodes = [make_episode(rng, 3, success=s) for s in (True, True, False, None)]
    root = write_minari_dataset(
        tmp_path / "m",
        episodes,
        dataset_id="robo-offline/mixed-v0",
        env_id=None,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
    )
    report = inspect_dataset(root)
    assert report.success_rate == pytest.approx(2 / 3)  # episodes without a flag do not count
    assert report.format == "minari" and report.n_episodes == 4
    assert "66.7%" in str(report)


def test_unreadable_file_still_raises(tmp_path):
    with pytest.raises(DatasetError):
        inspect_dataset(tmp_path / "missing.hdf5")
    with pytest.raises(TypeError):
        inspect_dataset(tmp_path / "missing.hdf5", colour="red")
