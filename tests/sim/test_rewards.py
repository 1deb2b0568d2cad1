"""Task rewards: the success reward is the task's goal, the same function relabels logs and the online env."""

from __future__ import annotations

import numpy as np
import pytest

from deploy.safety import SafetyConfig
from sim.envs import make_env
from sim.rewards import RelabelReward, resolve_reward
from sim.tasks import PUSHER_SUCCESS_RADIUS, pusher_successes
from sim.wrappers import LastActionObservation, SafetyFilterWrapper


def negative_distance(obs, act, next_obs):
    return -np.abs(next_obs[:, 0])


negative_distance.reward_floor = -10.0


def test_success_reward_is_one_exactly_where_the_next_observation_succeeds():
    spec = resolve_reward("success", "Pusher-v5")
    assert spec.floor == 0.0 and spec.sparse and spec.relabels
    obs = np.zeros((3, 23))
    nxt = np.zeros((3, 23))
    nxt[:, 17] = [0.0, PUSHER_SUCCESS_RADIUS * 0.9, PUSHER_SUCCESS_RADIUS * 1.1]  # puck x; the goal sits at 0
    np.testing.assert_array_equal(spec(obs, np.zeros((3, 7)), nxt), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(pusher_successes(nxt), [True, True, False])


def test_reward_names_resolve_or_fail_clearly():
    assert not resolve_reward("env", "Hopper-v5").relabels
    user = resolve_reward("test_rewards:negative_distance", "Hopper-v5")
    assert user.floor == -10.0 and not user.sparse
    with pytest.raises(ValueError, match="no success test"):
        resolve_reward("success", "Hopper-v5")
    with pytest.raises(ValueError, match="cannot import"):
        resolve_reward("nowhere:fn", "Hopper-v5")
    with pytest.raises(ValueError, match="module:function"):
        resolve_reward("dense", "Hopper-v5")


def test_online_reward_is_the_relabelling_function_of_the_executed_action():
    spec = resolve_reward("success", "Pusher-v5")
    tight = SafetyConfig(action_low=[-0.1] * 7, action_high=[0.1] * 7)
    env = LastActionObservation(SafetyFilterWrapper(RelabelReward(make_env("Pusher-v5"), spec), tight))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (30,) and np.all(obs[23:] == 0.0)  # safe action (zero torque) after a reset
    for _ in range(5):
        prev = obs
        obs, reward, _, _, info = env.step(np.full(7, 2.0, np.float32))
        np.testing.assert_allclose(obs[23:], 0.1)  # the executed (clamped) action, not the raw +2
        assert reward == spec(prev[None, :23], obs[None, 23:], obs[None, :23])[0]
        assert "env_reward" in info
