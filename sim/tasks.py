"""Task knowledge gymnasium leaves out, attached to an env id by the task's config, not hard-coded per id.

What a task config can say about its environment (`task.success`, `task.demos.demonstrator`,
`task.obs_keys`) is attached here when the config loads (`attach_task`), so a user's own gymnasium id
gets a success test, a scripted demonstrator and a Dict-observation order the same way the built-in tasks
do. Model-file tasks (`sim.model_task`) carry their success test in their spec; an attached one wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from sim.module_paths import load_object

SuccessFn = Callable[[np.ndarray], np.ndarray]  # (..., obs_dim) observations -> (...,) bools

PUSHER_SUCCESS_RADIUS = 0.08  # m, puck centre to goal centre in the table plane (the goal disc's radius)
PUSHER_PUCK_XY, PUSHER_GOAL_XY = slice(17, 19), slice(20, 22)  # observation layout of Pusher-v4/v5


def pusher_successes(obs: np.ndarray) -> np.ndarray:
    """Pusher's success (`task.success: sim.tasks:pusher_successes`): the puck within PUSHER_SUCCESS_RADIUS of the
    goal (planar distance), per row of (..., obs_dim) observations."""
    obs = np.asarray(obs)
    return np.linalg.norm(obs[..., PUSHER_PUCK_XY] - obs[..., PUSHER_GOAL_XY], axis=-1) < PUSHER_SUCCESS_RADIUS


@dataclass(frozen=True)
class TaskHooks:
    """What a task config attaches to its env id."""

    success: SuccessFn | None = None
    demonstrator: Callable[..., Any] | None = None  # (env, quality=, seed=) -> obs -> action
    obs_keys: tuple[str, ...] | None = None  # the flattening order of a Dict observation (None: sorted keys)


_ATTACHED: dict[str, TaskHooks] = {}


def attach_task(
    env_id: str,
    success: str | SuccessFn | None = None,
    demonstrator: str | Callable[..., Any] | None = None,
    obs_keys: Sequence[str] | None = None,
) -> TaskHooks:
    """Attach a task's knowledge to `env_id` in this process, replacing what was attached before; strings are
    `module:name` paths, imported now so a bad one fails here."""
    hooks = TaskHooks(
        success=load_object(success, "task.success") if isinstance(success, str) else success,
        demonstrator=load_object(demonstrator, "task.demos.demonstrator")
        if isinstance(demonstrator, str)
        else demonstrator,
        obs_keys=tuple(obs_keys) if obs_keys is not None else None,
    )
    return attach_hooks(env_id, hooks)


def attach_hooks(env_id: str, hooks: TaskHooks) -> TaskHooks:
    """Attach already-resolved hooks (what a vector env's worker process is handed by its parent)."""
    _ATTACHED[env_id] = hooks
    return hooks


def task_hooks(env_id: str | None) -> TaskHooks:
    return _ATTACHED.get(env_id, TaskHooks()) if env_id is not None else TaskHooks()


def success_function(env_id: str) -> SuccessFn | None:
    """The task's batched success test on observations: the attached one, else a model-file task's success sites,
    else None."""
    from sim.model_task import MODEL_TASKS, success_test

    hooks = task_hooks(env_id)
    if hooks.success is not None:
        return hooks.success
    spec = MODEL_TASKS.get(env_id)
    return success_test(spec) if spec is not None and spec.success_sites is not None else None


class SuccessInfo(gym.Wrapper):
    """Adds `info["is_success"]` to every reset and step; an episode's success is its last step's value."""

    def __init__(self, env: gym.Env, successes: SuccessFn) -> None:
        super().__init__(env)
        self.successes = successes

    def is_success(self, obs: np.ndarray) -> bool:
        return bool(self.successes(np.asarray(obs)[None])[0])

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "is_success": self.is_success(obs)}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "is_success": self.is_success(obs)}


class FlattenDictObservation(gym.ObservationWrapper):
    """A Dict observation as one flat vector, its keys concatenated in `keys` order (default: sorted), the same
    order the log readers use (`task.obs_keys`), so offline and online rows line up."""

    def __init__(self, env: gym.Env, keys: Sequence[str] | None = None) -> None:
        super().__init__(env)
        space = env.observation_space
        self.keys = tuple(keys) if keys is not None else tuple(sorted(space.spaces))
        missing = [k for k in self.keys if k not in space.spaces]
        if missing:
            raise ValueError(f"task.obs_keys: {missing} not in the env's observation keys {sorted(space.spaces)}")
        boxes = [space[k] for k in self.keys]
        if not all(isinstance(b, gym.spaces.Box) for b in boxes):
            raise TypeError(f"only Dict observations of Box spaces can be flattened, got {space}")
        self.widths = [int(np.prod(b.shape)) for b in boxes]
        self.observation_space = gym.spaces.Box(
            np.concatenate([np.broadcast_to(b.low, b.shape).reshape(-1) for b in boxes]).astype(np.float32),
            np.concatenate([np.broadcast_to(b.high, b.shape).reshape(-1) for b in boxes]).astype(np.float32),
            dtype=np.float32,
        )

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).reshape(-1) for k in self.keys])

    def observation_parts(self) -> list[tuple[str, int, str]]:
        """(key, width, units) of each part of the flat observation, in order."""
        return [(k, w, "") for k, w in zip(self.keys, self.widths)]


def flattened_dict_keys(env: gym.Env) -> tuple[str, ...] | None:
    """The key order of the Dict observation `env` flattens, or None where it has no Dict observation."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, FlattenDictObservation):
            return env.keys
        env = env.env
    return None


def apply_task_wrapper(env: gym.Env, env_id: str) -> gym.Env:
    """A Dict observation flattened in the task's key order, then `info["is_success"]` where the task config
    attached a success test (model-file tasks report their own)."""
    hooks = task_hooks(env_id)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = FlattenDictObservation(env, hooks.obs_keys)
    return SuccessInfo(env, hooks.success) if hooks.success is not None else env
