"""The simulator receives, and rollouts record, the filtered action."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from deploy.safety import SafetyConfig
from sim.episode import Episode
from sim.wrappers import SafetyFilterWrapper

torch.set_num_threads(1)

TIGHT = SafetyConfig(action_low=[-0.1] * 7, action_high=[0.1] * 7, max_delta=[0.05] * 7)


class RecordSentActions(gym.Wrapper):
    """Sits under the safety wrapper and remembers what the simulator was really given."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.sent: list[np.ndarray] = []

    def step(self, action):
        self.sent.append(np.array(action, copy=True))
        return self.env.step(action)


def make_env(config: SafetyConfig = TIGHT) -> tuple[SafetyFilterWrapper, RecordSentActions]:
    recorder = RecordSentActions(gym.make("Pusher-v5", max_episode_steps=25))
    return SafetyFilterWrapper(recorder, config), recorder


def rollout(env: gym.Env, policy, seed: int) -> Episode:
    """Minimal rollout storing the executed action, as the project's collectors do."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        observations.append(obs)
        actions.append(info["executed_action"])
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        done = terminated or truncated
    return Episode(
        observations=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminations=np.asarray(terms),
        truncations=np.asarray(truncs),
    )


def test_rollout_records_the_filtered_action_the_simulator_received() -> None:
    env, recorder = make_env()
    rng = np.random.default_rng(0)
    episode = rollout(env, lambda obs: rng.uniform(-2.0, 2.0, size=7).astype(np.float32), seed=0)
    assert episode.length == 25
    np.testing.assert_array_equal(episode.actions, np.asarray(recorder.sent))
    assert np.all(np.abs(episode.actions) <= 0.1)
    previous = np.vstack([np.zeros((1, 7)), episode.actions[:-1]])  # first step limited relative to safe_action 0
    assert np.all(np.abs(episode.actions - previous) <= 0.05 + 1e-7)
    assert np.any(np.abs(episode.actions) > 0.09), "a saturating policy should reach the tight bound"


def test_interventions_are_reported_every_step_and_reset_with_the_env() -> None:
    env, _ = make_env()
    env.reset(seed=1)
    _, _, _, _, info = env.step(np.full(7, 2.0, dtype=np.float32))
    assert info["safety_interventions"] == {"clamp": 1, "rate": 1, "nonfinite": 0, "joint_limit": 0}
    _, _, _, _, info = env.step(np.full(7, np.nan, dtype=np.float32))
    assert np.isfinite(info["executed_action"]).all()
    assert info["safety_interventions"]["nonfinite"] == 1
    env.reset(seed=2)
    _, _, _, _, info = env.step(np.zeros(7, dtype=np.float32))
    assert info["safety_interventions"] == {"clamp": 0, "rate": 0, "nonfinite": 0, "joint_limit": 0}


def test_joint_limit_lookahead_uses_the_latest_observation() -> None:
    config = SafetyConfig(
        action_low=[-2.0] * 7,
        action_high=[2.0] * 7,
        joint_pos_indices=[3],
        joint_vel_indices=[10],
        joint_lower=[-2.3213],
        joint_upper=[0.0],
        joint_action_indices=[3],
        control_period=0.05,
    )
    env, _ = make_env(config)
    obs, _ = env.reset(seed=0)
    assert obs[3] == 0.0  # Pusher starts with the elbow at its upper stop (0 rad)
    _, _, _, _, info = env.step(np.full(7, 1.0, dtype=np.float32))
    assert info["executed_action"][3] == 0.0 and info["executed_action"][0] == 1.0
    assert info["safety_interventions"]["joint_limit"] == 1


def test_config_that_does_not_fit_the_env_is_rejected() -> None:
    with pytest.raises(ValueError, match="action_low has 3 entries, the model has 7"):
        SafetyFilterWrapper(gym.make("Pusher-v5"), SafetyConfig(action_low=[-1.0] * 3, action_high=[1.0] * 3))
