"""Task knowledge gymnasium leaves out, chiefly when an episode counts as a success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

PUSHER_SUCCESS_RADIUS = 0.08  # m, puck centre to goal centre in the table plane (the goal disc's radius)
PUSHER_PUCK_XY, PUSHER_GOAL_XY = slice(17, 19), slice(20, 22)  # observation layout of Pusher-v4/v5


def pusher_successes(obs: np.ndarray) -> np.ndarray:
    """Puck within PUSHER_SUCCESS_RADIUS of the goal (planar distance), per row of (..., obs_dim) observations."""
    obs = np.asarray(obs)
    return np.linalg.norm(obs[..., PUSHER_PUCK_XY] - obs[..., PUSHER_GOAL_XY], axis=-1) < PUSHER_SUCCESS_RADIUS


def pusher_success(obs: np.ndarray) -> bool:
    """One observation's success."""
    return bool(pusher_successes(obs))


class SuccessInfo(gym.Wrapper):
    """Adds `info["is_success"]` to every reset and step; an episode's success is its last step's value."""

    def __init__(self, env: gym.Env, is_success: Callable[[np.ndarray], bool]) -> None:
        super().__init__(env)
        self.is_success = is_success

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "is_success": self.is_success(obs)}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "is_success": self.is_success(obs)}


def pusher_task(env: gym.Env) -> gym.Env:
    return SuccessInfo(env, pusher_success)


TASK_WRAPPERS: dict[str, Callable[[gym.Env], gym.Env]] = {
    "Pusher-v4": pusher_task,
    "Pusher-v5": pusher_task,
}
SUCCESS_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Pusher-v4": pusher_successes,
    "Pusher-v5": pusher_successes,
}


def success_function(env_id: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The task's batched success test on observations, None for tasks without one (model-file tasks declare
    theirs in their spec)."""
    from sim.model_task import MODEL_TASKS, success_test

    spec = MODEL_TASKS.get(env_id)
    if spec is not None and spec.success_sites is not None:
        return success_test(spec)
    return SUCCESS_FUNCTIONS.get(env_id)


def apply_task_wrapper(env: gym.Env, env_id: str) -> gym.Env:
    """Wrap `env` with its task's wrapper; envs of unknown tasks come back unchanged."""
    wrapper = TASK_WRAPPERS.get(env_id)
    return wrapper(env) if wrapper is not None else env
