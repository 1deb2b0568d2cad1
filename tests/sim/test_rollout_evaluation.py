"""Rollouts record well-formed Episodes; evaluation counts exactly n episodes, reproducibly."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from sim.behaviours import PolicyBehaviour, RandomBehaviour, make_behaviour
from sim.envs import make_env
from sim.evaluation import EvalResult, evaluate
from sim.rollout import rollout_episodes
from sim.scores import normalized_score

PUSHER, PENDULUM = "Pusher-v5", "InvertedPendulum-v5"


def linear_policy(obs: np.ndarray) -> np.ndarray:
    """Deterministic batched InvertedPendulum policy that balances for a while: episodes of varied length."""
    return np.clip(np.asarray(obs) @ np.array([[0.8], [3.0], [0.3], [0.6]]), -3.0, 3.0).astype(np.float32)


def test_rollout_episode_shapes_and_dtypes():
    env = make_env(PUSHER)
    episodes = rollout_episodes(env, RandomBehaviour(env.action_space), 2, seed=0, progress=False)
    assert len(episodes) == 2
    for ep in episodes:
        assert ep.observations.shape == (101, 23) and ep.observations.dtype == np.float32
        assert ep.actions.shape == (100, 7) and ep.actions.dtype == np.float32
        assert ep.rewards.shape == (100,) and ep.rewards.dtype == np.float32
        assert ep.terminations.dtype == bool and ep.truncations.dtype == bool
        assert not ep.terminations.any() and ep.truncations[-1] and not ep.truncations[:-1].any()
        assert ep.success is False  # random torques never bring the puck home
        assert np.all(np.abs(ep.actions) <= 2.0)


def test_rollouts_are_reproducible_and_episode_k_uses_seed_plus_k():
    env = make_env(PUSHER)
    behaviour = make_behaviour("random", env, seed=0)
    first = rollout_episodes(env, behaviour, 2, seed=40, progress=False)
    again = rollout_episodes(env, behaviour, 2, seed=40, progress=False)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(first[1].observations[0], np.float32(env.reset(seed=41)[0]))


def test_rollout_records_executed_actions_reported_by_a_filter():
    class HalveActions(gym.Wrapper):
        def step(self, action: Any):
            executed = np.asarray(action, dtype=np.float32) * 0.5
            obs, reward, terminated, truncated, info = self.env.step(executed)
            return obs, reward, terminated, truncated, {**info, "executed_action": executed}

    env = HalveActions(make_env(PUSHER))
    ep = rollout_episodes(env, PolicyBehaviour(lambda obs: np.full(7, 1.0, np.float32)), 1, seed=0, progress=False)[0]
    np.testing.assert_array_equal(ep.actions, np.full((100, 7), 0.5, np.float32))


def test_rollout_without_success_info_reports_none():
    env = make_env(PENDULUM)
    ep = rollout_episodes(env, PolicyBehaviour(lambda obs: linear_policy(obs[None])[0]), 1, seed=0, progress=False)[0]
    assert ep.success is None
    assert ep.terminations[-1] or ep.truncations[-1]
    assert len(ep.observations) == ep.length + 1


def test_evaluate_counts_exactly_n_episodes_each_seeded_seed_plus_k():
    policy = PolicyBehaviour(lambda obs: linear_policy(obs[None])[0])
    result = evaluate(policy, PENDULUM, n_episodes=7, seed=3)
    assert len(result.returns) == len(result.lengths) == len(result.episodes) == 7
    assert result.seeds == tuple(range(3, 10))
    assert len(set(result.lengths)) > 1  # lengths vary, so the counting is really exercised
    env = make_env(PENDULUM)
    for k, episode in enumerate(result.episodes):  # episode k starts where reset(seed=3 + k) starts
        np.testing.assert_array_equal(episode.observations[0], np.float32(env.reset(seed=3 + k)[0]))
    assert result.mean_return == pytest.approx(np.mean(result.returns))
    assert result.std_return == pytest.approx(np.std(result.returns))
    assert result.success_rate is None and result.normalized_score is None


def test_evaluate_is_deterministic_under_a_seed_and_a_prefix_of_a_longer_evaluation():
    policy = PolicyBehaviour(lambda obs: linear_policy(obs[None])[0])
    a = evaluate(policy, PENDULUM, n_episodes=4, seed=11)
    b = evaluate(policy, PENDULUM, n_episodes=4, seed=11)
    c = evaluate(policy, PENDULUM, n_episodes=4, seed=12)
    longer = evaluate(policy, PENDULUM, n_episodes=6, seed=11)
    assert a == b
    assert a.returns != c.returns
    assert longer.returns[:4] == a.returns


def test_evaluate_reports_success_and_normalized_score_for_pusher():
    still = PolicyBehaviour(lambda obs: np.zeros(7, np.float32))
    result = evaluate(still, PUSHER, n_episodes=3, seed=0)
    assert result.success_rate == 0.0  # an arm that does nothing never moves the puck
    assert result.lengths == (100, 100, 100)
    assert result.normalized_score == pytest.approx(normalized_score(PUSHER, result.mean_return))
    assert result.metrics() == {
        k: result.as_dict()[k] for k in ("mean_return", "std_return", "success_rate", "normalized_score")
    }
    json.dumps(result.as_dict())
    assert isinstance(result.as_dict()["returns"], list) and "episodes" not in result.as_dict()


def test_evaluate_runs_the_scripted_expert_through_wrappers():
    env = make_env(PUSHER)
    demo = make_behaviour("scripted", env, quality="expert", seed=0)
    seen = []

    def spy(env):
        seen.append(env)
        return env

    result = evaluate(demo, PUSHER, n_episodes=2, seed=0, wrappers=[spy])
    assert isinstance(result, EvalResult) and len(result.returns) == 2 and len(seen) == 1
    assert result.success_rate is not None
    assert result.normalized_score > 50  # far above random (0)
