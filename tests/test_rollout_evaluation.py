"""Rollouts record well-formed Episodes; evaluation counts exactly n episodes, reproducibly."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from sim.behaviours import PolicyBehaviour, RandomBehaviour, make_behaviour
from sim.envs import make_env, make_vector_env
from sim.evaluation import EvalResult, evaluate, evaluate_behaviour, run_vector_episodes
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


def _sequential_reference(n_per_env: list[int], seed: int) -> list[tuple[float, int]]:
    """What each sub-env of a vector env must produce: seeded once with seed + i, then plain resets."""
    out = []
    for i, n in enumerate(n_per_env):
        env = make_env(PENDULUM)
        obs, _ = env.reset(seed=seed + i)
        for _ in range(n):
            ret, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(linear_policy(obs[None])[0])
                ret, length, done = ret + float(reward), length + 1, terminated or truncated
            out.append((ret, length))
            obs, _ = env.reset()
    return out


def test_evaluate_counts_exactly_n_episodes_and_ignores_autoreset_steps():
    result = evaluate(linear_policy, PENDULUM, n_episodes=7, seed=3, num_envs=3)
    assert len(result.returns) == len(result.lengths) == 7
    assert len(set(result.lengths)) > 1  # lengths vary, so the counting is really exercised
    reference = _sequential_reference([3, 2, 2], seed=3)
    np.testing.assert_allclose(result.returns, [r for r, _ in reference])
    assert list(result.lengths) == [n for _, n in reference]
    assert result.mean_return == pytest.approx(np.mean(result.returns))
    assert result.std_return == pytest.approx(np.std(result.returns))
    assert result.success_rate is None and result.normalized_score is None


def test_same_step_and_next_step_autoreset_agree():
    outcomes = {}
    for mode in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
        envs = make_vector_env(PENDULUM, 2, seed=9, autoreset_mode=mode)
        outcomes[mode] = run_vector_episodes(envs, linear_policy, 5, seed=9)
        envs.close()
    assert outcomes[gym.vector.AutoresetMode.NEXT_STEP] == outcomes[gym.vector.AutoresetMode.SAME_STEP]
    assert len(outcomes[gym.vector.AutoresetMode.SAME_STEP]) == 5


def test_evaluate_is_deterministic_under_a_seed():
    a = evaluate(linear_policy, PENDULUM, n_episodes=4, seed=11, num_envs=2)
    b = evaluate(linear_policy, PENDULUM, n_episodes=4, seed=11, num_envs=2)
    c = evaluate(linear_policy, PENDULUM, n_episodes=4, seed=12, num_envs=2)
    assert a == b
    assert a.returns != c.returns


def test_evaluate_reports_success_and_normalized_score_for_pusher():
    def still(obs: np.ndarray) -> np.ndarray:
        return np.zeros((len(obs), 7), np.float32)

    result = evaluate(still, PUSHER, n_episodes=3, seed=0, num_envs=2)
    assert result.success_rate == 0.0  # an arm that does nothing never moves the puck
    assert result.lengths == (100, 100, 100)
    assert result.normalized_score == pytest.approx(normalized_score(PUSHER, result.mean_return))
    json.dumps(result.as_dict())
    assert isinstance(result.as_dict()["returns"], list)


def test_evaluate_behaviour_runs_the_scripted_expert():
    env = make_env(PUSHER)
    demo = make_behaviour("scripted", env, quality="expert", seed=0)
    result = evaluate_behaviour(demo, PUSHER, n_episodes=2, seed=0)
    assert isinstance(result, EvalResult) and len(result.returns) == 2
    assert result.success_rate is not None
    assert result.normalized_score > 50  # far above random (0)
