"""`TransitionDataset`: sampling, statistics, transforms and building from in-memory episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from builders import make_episode, reference_returns

from deploy.units import EnvUnits
from robo_offline.data import Batch, DatasetError, TransitionDataset, load_dataset, write_minari_dataset

torch.set_num_threads(1)


@pytest.fixture()
def episodes():
    rng = np.random.default_rng(0)
    return [
        make_episode(rng, 6, terminated=True, success=True),
        make_episode(rng, 4, success=False),
        make_episode(rng, 5),
    ]


@pytest.fixture()
def dataset(episodes):
    return TransitionDataset.from_episodes(episodes, gamma=0.9)


def test_sample_shapes_dtypes_device(dataset):
    batch = dataset.sample(32, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch, Batch)
    assert batch.observations.shape == (32, 3) and batch.next_observations.shape == (32, 3)
    assert batch.actions.shape == (32, 2)
    assert batch.rewards.shape == batch.terminals.shape == batch.mc_returns.shape == (32,)
    assert all(t.dtype == torch.float32 and t.device == dataset.device for t in batch)


def test_sample_rows_are_consistent_transitions(dataset):
    """Every sampled row is one dataset row: all fields come from the same index."""
    batch = dataset.sample(64, generator=torch.Generator().manual_seed(1))
    index = torch.cdist(batch.observations, dataset.observations).argmin(dim=1)
    for name in Batch._fields:
        torch.testing.assert_close(getattr(batch, name), getattr(dataset, name)[index])


def test_sample_is_reproducible_with_a_generator(dataset):
    first = dataset.sample(16, generator=torch.Generator().manual_seed(7))
    second = dataset.sample(16, generator=torch.Generator().manual_seed(7))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_sizes_and_episode_returns(dataset, episodes):
    assert dataset.n_transitions == len(dataset) == 15
    assert dataset.n_episodes == 3 and dataset.obs_dim == 3 and dataset.act_dim == 2
    expected = [ep.total_return for ep in episodes]
    np.testing.assert_allclose(dataset.episode_returns().numpy(), expected, rtol=1e-5)
    assert dataset.metadata["episode_success"] == [True, False, None]


def test_observation_stats(dataset):
    mean, std = dataset.observation_stats()
    obs = dataset.observations.double().numpy()
    np.testing.assert_allclose(mean.numpy(), obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), obs.std(0), rtol=1e-5)
    constant = TransitionDataset.from_episodes([make_episode(np.random.default_rng(1), 4)])
    constant.observations.zero_()
    assert torch.equal(constant.observation_stats(eps=0.01)[1], torch.full((3,), 0.01))


def test_transformed_normalises_maps_actions_and_recomputes_returns(dataset):
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 4.0])
    raw_actions, raw_rewards = dataset.actions.clone(), dataset.rewards.clone()
    dataset.actions.copy_(torch.as_tensor(low + (raw_actions.numpy() + 1) / 2 * (high - low)))  # now in [low, high]
    mean, std = dataset.observation_stats()
    out = dataset.transformed(EnvUnits(mean, std, low, high, reward_scale=2.0, reward_shift=-1.0))

    torch.testing.assert_close(out.actions, raw_actions, atol=1e-5, rtol=0)  # back in [-1, 1]
    assert out.actions.min() >= -1 and out.actions.max() <= 1
    new_mean, new_std = out.observation_stats()
    torch.testing.assert_close(new_mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(new_std, torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.next_observations, (dataset.next_observations - mean) / std)
    torch.testing.assert_close(out.rewards, raw_rewards * 2 - 1)
    ends = (dataset.terminals + dataset.timeouts).numpy() > 0
    expected_returns = reference_returns(out.rewards.double().numpy(), ends, dataset.gamma)
    np.testing.assert_allclose(out.mc_returns.numpy(), expected_returns, rtol=1e-5, atol=1e-5)
    assert out.metadata["transforms"][-1]["reward_scale"] == 2.0
    torch.testing.assert_close(dataset.rewards, raw_rewards)  # the original is left untouched
    assert out.terminals is dataset.terminals


def test_transformed_rejects_units_of_other_dimensions(dataset):
    with pytest.raises(ValueError, match="obs_dim=5"):
        dataset.transformed(EnvUnits.identity(5, np.zeros(2), np.ones(2)))


def write_log(tmp_path, episodes):
    """The episodes as a Minari log on disk (obs 3, act 2); its root directory."""
    return write_minari_dataset(
        tmp_path / "ds",
        episodes,
        dataset_id="robo-offline/log-v0",
        env_id=None,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
    )


def test_from_episodes_agrees_with_write_then_load(tmp_path, episodes):
    in_memory = TransitionDataset.from_episodes(episodes, gamma=0.95)
    root = write_log(tmp_path, episodes)
    loaded = load_dataset(root, gamma=0.95)
    for name in (*Batch._fields, "timeouts", "episode_ids"):
        torch.testing.assert_close(getattr(loaded, name), getattr(in_memory, name), rtol=0, atol=0)
    assert loaded.metadata["episode_success"] == in_memory.metadata["episode_success"]


def test_from_episodes_errors():
    with pytest.raises(DatasetError, match="no episodes"):
        TransitionDataset.from_episodes([])
    episode = make_episode(np.random.default_rng(2), 3)
    episode.rewards[1] = np.nan
    with pytest.raises(DatasetError, match="NaN") as err:
        TransitionDataset.from_episodes([episode])
    assert err.value.key == "episode_0/rewards"


def test_to_moves_every_tensor(dataset):
    assert dataset.to("cpu") is dataset
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    moved = dataset.to("cuda")
    assert all(getattr(moved, name).is_cuda for name in ("observations", "episode_ids", "mc_returns"))
    batch = moved.sample(8, generator=torch.Generator(device="cuda").manual_seed(0))
    assert all(t.is_cuda for t in batch)


def test_relabelled_rewards_come_from_the_function_and_the_returns_follow(dataset):
    def first_obs_coordinate(obs, act, next_obs):
        return next_obs[:, 0] > 0

    out = dataset.relabelled(first_obs_coordinate, "mine")
    np.testing.assert_array_equal(out.rewards.numpy(), (dataset.next_observations[:, 0] > 0).float().numpy())
    ends = (dataset.terminals + dataset.timeouts).numpy() > 0
    np.testing.assert_allclose(out.mc_returns.numpy(), reference_returns(out.rewards.numpy(), ends, 0.9), rtol=1e-5)
    assert out.metadata["reward"] == "mine" and "reward" not in dataset.metadata


def test_mc_returns_are_computed_once_on_first_use_and_not_by_a_load(tmp_path, episodes, monkeypatch):
    from robo_offline.data import dataset as dataset_module

    calls = []
    compute = dataset_module.compute_mc_returns
    monkeypatch.setattr(dataset_module, "compute_mc_returns", lambda *a: calls.append(1) or compute(*a))
    root = write_log(tmp_path, episodes)
    loaded = load_dataset(root, gamma=0.9)
    assert calls == []
    ends = (loaded.terminals + loaded.timeouts).numpy() > 0
    expected = reference_returns(loaded.rewards.numpy(), ends, 0.9)
    np.testing.assert_allclose(loaded.mc_returns.numpy(), expected, rtol=1e-5)
    rows = torch.tensor([0, 3, 7, 14])
    np.testing.assert_allclose(loaded.gather(rows).mc_returns.numpy(), expected[rows.numpy()], rtol=1e-5)
    assert calls == [1]


def test_with_last_actions_appends_the_episodes_previous_action(dataset, episodes):
    initial = torch.tensor([0.5, -0.5])
    out = dataset.with_last_actions(initial)
    assert out.obs_dim == 5
    starts = [0, 6, 10]  # episode lengths 6, 4, 5
    for t in range(dataset.n_transitions):
        expected = initial if t in starts else dataset.actions[t - 1]
        torch.testing.assert_close(out.observations[t, 3:], expected)
        torch.testing.assert_close(out.next_observations[t, 3:], dataset.actions[t])  # a_t is next step's last action
    torch.testing.assert_close(out.observations[:, :3], dataset.observations)


def test_transformed_returns_are_lower_bounds_with_the_floor(dataset):
    units = EnvUnits.identity(3, np.full(2, -1.0), np.full(2, 1.0))
    negative = dataset.relabelled(lambda o, a, n: -np.ones(len(o)), "minus one")
    bounded = negative.transformed(units, reward_floor=-1.0)
    assert bounded.metadata["mc_lower_bound"]
    # the timed-out episodes never succeed: -1 / (1 - 0.9) = -10 on every step; the terminal one is exact
    np.testing.assert_allclose(bounded.mc_returns[6:].numpy(), -10.0, rtol=1e-5)
    assert bounded.mc_returns[5] == pytest.approx(-1.0)
    assert not negative.transformed(units).metadata["mc_lower_bound"]
