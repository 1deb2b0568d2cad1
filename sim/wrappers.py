"""Gymnasium wrappers shared by rollouts, data collection and evaluation."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch

from deploy.safety import SafetyConfig, SafetyFilter
from sim.model_limits import with_model_limits


class SafetyFilterWrapper(gym.Wrapper):
    """Run every action through the deployment `SafetyFilter` before the simulator sees it.

    Simulating with the same filter as the robot keeps training data, evaluation and
    deployment consistent. The filter sees the latest observation (for its non-finite and
    joint-limit checks) and is reset with the environment. Every step's info carries
    `executed_action` (what the simulator actually received; store this, not the policy's
    raw action) and `safety_interventions` (counts per kind since the last reset).
    """

    def __init__(self, env: gym.Env, safety: SafetyFilter | SafetyConfig) -> None:
        super().__init__(env)
        obs_dim, act_dim = _flat_dim(env.observation_space), _flat_dim(env.action_space)
        if isinstance(safety, SafetyConfig):
            safety = SafetyFilter(with_model_limits(safety, env), obs_dim=obs_dim)
        safety.config.validate(obs_dim=obs_dim, act_dim=act_dim)
        self.safety_filter = safety.eval()
        self._last_obs = torch.zeros(obs_dim)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.safety_filter.reset()
        self._last_obs = _to_tensor(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        with torch.no_grad():
            filtered = self.safety_filter(self._last_obs, _to_tensor(action))
        executed = filtered.numpy().astype(self.env.action_space.dtype, copy=True)
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._last_obs = _to_tensor(obs)
        info = {**info, "executed_action": executed.copy(), "safety_interventions": self.safety_filter.interventions()}
        return obs, reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """The filter's memory (previous action, counts) and the last observation, for mid-episode resume."""
        return {
            "filter": {k: v.clone() for k, v in self.safety_filter.state_dict().items()},
            "last_obs": self._last_obs.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.safety_filter.load_state_dict(state["filter"])
        self._last_obs = state["last_obs"].clone()


class LastActionObservation(gym.Wrapper):
    """Append the last executed (filtered) action to the observation: `[obs, a_prev]`, `a_prev = safe_action`
    after a reset.

    The safety filter's rate limit makes the executed action depend on the previous one; with it in the
    observation a transition is Markov again, so a policy can imitate or evaluate it. Wraps a
    `SafetyFilterWrapper` directly (its executed action and safe action are what the robot's filter,
    inside the exported file, holds too).
    """

    def __init__(self, env: gym.Env) -> None:
        if not isinstance(env, SafetyFilterWrapper):
            raise TypeError("LastActionObservation wraps a SafetyFilterWrapper (it appends the filter's output)")
        super().__init__(env)
        obs_space, act_space = env.observation_space, env.action_space
        self.observation_space = gym.spaces.Box(
            np.concatenate([obs_space.low, act_space.low]).astype(np.float32),
            np.concatenate([obs_space.high, act_space.high]).astype(np.float32),
            dtype=np.float32,
        )
        self._initial = env.safety_filter.safe_action.numpy().astype(np.float32)
        self._last = self._initial.copy()

    def _observe(self, obs: Any) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32).reshape(-1), self._last])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._last = self._initial.copy()
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last = np.asarray(info["executed_action"], dtype=np.float32).copy()
        return self._observe(obs), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {"last": self._last.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last = np.asarray(state["last"], dtype=np.float32).copy()


def _flat_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise TypeError(f"SafetyFilterWrapper needs flat Box spaces, got {space}")
    return int(space.shape[0])


def _to_tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))
