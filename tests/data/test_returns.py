"""Monte-Carlo return-to-go: a hand-worked case, a reference recursion, and the loader's use of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import reference_returns, write_d4rl
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_offline.data import compute_mc_returns, load_dataset
from robo_offline.data.returns import continued_returns, lower_bound_returns, reverse_linear_scan

torch.set_num_threads(1)

# Six transitions: episode A = steps 0-2 ending in a terminal, episode B = steps 3-4 cut by a
# timeout, episode C = step 5, the last row of the data. With gamma = 0.9:
#   A: G2 = 3,  G1 = 2 + 0.9 * 3 = 4.7,  G0 = 1 + 0.9 * 4.7 = 5.23
#   B: G4 = 5,  G3 = 4 + 0.9 * 5 = 8.5   (the timeout stops the sum: nothing from C leaks in)
#   C: G5 = 6
REWARDS = np.array([1, 2, 3, 4, 5, 6], dtype=np.float32)
TERMINALS = np.array([0, 0, 1, 0, 0, 0], dtype=bool)
TIMEOUTS = np.array([0, 0, 0, 0, 1, 0], dtype=bool)
HAND_COMPUTED = np.array([5.23, 4.7, 3.0, 8.5, 5.0, 6.0])


def test_hand_computed_case_with_terminal_and_timeout():
    returns = compute_mc_returns(REWARDS, TERMINALS, TIMEOUTS, gamma=0.9)
    np.testing.assert_allclose(returns, HAND_COMPUTED, rtol=1e-6)
    assert returns.dtype == np.float32


def test_loader_uses_the_same_definition_and_keeps_timeouts_non_terminal(tmp_path):
    obs = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    path = write_d4rl(
        tmp_path / "six.hdf5",
        {
            "observations": obs[:6],
            "next_observations": obs[1:],
            "actions": np.zeros((6, 1), np.float32),
            "rewards": REWARDS,
            "terminals": TERMINALS,
            "timeouts": TIMEOUTS,
        },
    )
    data = load_dataset(path, gamma=0.9)
    np.testing.assert_allclose(data.mc_returns.numpy(), HAND_COMPUTED, rtol=1e-6)
    assert data.terminals.tolist() == [0, 0, 1, 0, 0, 0]
    assert data.timeouts.tolist() == [0, 0, 0, 0, 1, 1]  # the end of the data also cuts an episode
    assert data.episode_ids.tolist() == [0, 0, 0, 1, 1, 2]
    assert data.n_episodes == 3
    np.testing.assert_allclose(data.episode_returns().numpy(), [6.0, 9.0, 6.0])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    end_rate=st.sampled_from([0.0, 0.001, 0.05, 0.5, 1.0]),
    gamma=st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_recursion(n, end_rate, gamma, seed):
    rng = np.random.default_rng(seed)
    rewards = rng.standard_normal(n).astype(np.float32)
    terminals = rng.random(n) < end_rate / 2
    timeouts = rng.random(n) < end_rate / 2
    expected = reference_returns(rewards.astype(np.float64), terminals | timeouts, gamma)
    got = compute_mc_returns(rewards, terminals, timeouts, gamma)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5 * max(1.0, np.abs(expected).max()))


def test_one_long_undiscounted_episode_sums_every_suffix():
    rewards = np.random.default_rng(0).uniform(0, 1, 200_003).astype(np.float32)
    no_ends = np.zeros(len(rewards), dtype=bool)
    returns = compute_mc_returns(rewards, no_ends, no_ends, gamma=1.0)
    suffix_sums = np.cumsum(rewards[::-1].astype(np.float64))[::-1]
    np.testing.assert_allclose(returns, suffix_sums, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 64, 65, 5000])
def test_general_linear_scan(n):
    rng = np.random.default_rng(n)
    a, c = rng.standard_normal(n), rng.uniform(0, 1.2, n)
    expected = np.zeros(n + 1)
    for t in reversed(range(n)):
        expected[t] = a[t] + c[t] * expected[t + 1]
    np.testing.assert_allclose(reverse_linear_scan(a, c), expected[:n], rtol=1e-9, atol=1e-9)


def test_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="rows"):
        compute_mc_returns(np.zeros(3), np.zeros(2, bool), np.zeros(2, bool), 0.9)


def test_lower_bound_returns_continue_cut_episodes_at_the_floor():
    # episode 1: rewards -1, -1, -1 cut by a time limit; episode 2: 1, 1 ending in a terminal; gamma 0.5
    rewards = np.array([-1, -1, -1, 1, 1], np.float32)
    terminals = np.array([0, 0, 0, 0, 1], bool)
    timeouts = np.array([0, 0, 1, 0, 0], bool)
    g, valid = lower_bound_returns(rewards, terminals, timeouts, 0.5, floor=-1.0)
    # a failed sparse episode: -1 / (1 - gamma) = -2 on every step (the official Cal-QL rule); the terminal one as is
    np.testing.assert_allclose(g, [-2.0, -2.0, -2.0, 1.5, 1.0])
    assert valid
    _, valid = lower_bound_returns(rewards, terminals, timeouts, 0.5, floor=None)
    assert not valid  # negative rewards, a time limit and no floor: no bound is known
    g, valid = lower_bound_returns(np.abs(rewards), terminals, timeouts, 0.5, floor=None)
    np.testing.assert_allclose(g, [1.75, 1.5, 1.0, 1.5, 1.0])  # non-negative rewards: the plain sum bounds
    assert valid
    g, valid = lower_bound_returns(rewards, np.ones(5, bool), np.zeros(5, bool), 0.5, floor=None)
    assert valid  # no cut episode: every return is exact


def test_lower_bound_returns_with_a_partial_floor_tail_by_hand():
    # one episode 0, 1 cut at its end, floor -2, gamma 0.5: G_1 = 1 + 0.5 * (-2 / 0.5) = -1, G_0 = 0 + 0.5 G_1
    g, valid = lower_bound_returns(np.array([0, 1], np.float32), np.zeros(2, bool), np.array([0, 1], bool), 0.5, -2.0)
    np.testing.assert_allclose(g, [-0.5, -1.0])


def test_continued_returns_repeat_the_last_reward_after_a_cut():
    g = continued_returns(np.array([0, 1, 1], np.float32), np.zeros(3, bool), np.array([0, 0, 1], bool), 0.5)
    np.testing.assert_allclose(g, [1.0, 2.0, 2.0])  # 1 / (1 - 0.5) = 2 from the last step on
