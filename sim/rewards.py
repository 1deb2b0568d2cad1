"""Task rewards: what a run optimises, defined once as a function of (observation, action, next observation).

The same function relabels logged demos at load and replaces the simulator's reward online
(`RelabelReward`), so offline and online data carry one reward. `task.reward` selects it:

- `env`: the environment's own reward (for Pusher, distances plus a control cost: hovering at the
  puck scores like finishing the push);
- `success`: 1 on every step whose next observation is a success, else 0 (the task's goal as its
  reward; needs a task with a success test: `task.success`, or a model task's sites);
- `module:function`: a user's function `(obs (N, o), action (N, a), next_obs (N, o)) -> (N,)`.
  It may carry `reward_floor` (a lower bound of every per-step reward) as an attribute.

`RewardSpec.floor` is what makes a Monte-Carlo return a lower bound on a value (Cal-QL's
reference value): every per-step reward is at least `floor`, or None where nothing is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from sim.module_paths import load_object
from sim.tasks import success_function

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
KINDS = ("env", "success")  # besides a user's module:function


@dataclass(frozen=True)
class RewardSpec:
    name: str  # "env", "success" or "module:function"
    fn: RewardFn | None  # None: the environment's own reward, unchanged
    floor: float | None  # every per-step reward is >= floor; None: no bound known
    sparse: bool  # only a success / failure value per step (the algorithms then use their AntMaze scales)

    @property
    def relabels(self) -> bool:
        return self.fn is not None

    def __call__(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Batched rewards (float32, shape (N,)) of transitions given as (N, dim) arrays."""
        if self.fn is None:
            raise ValueError("the 'env' reward is the simulator's own and cannot be recomputed from transitions")
        out = np.asarray(self.fn(np.asarray(obs), np.asarray(action), np.asarray(next_obs)), dtype=np.float32)
        if out.shape != (len(obs),):
            raise ValueError(f"reward {self.name!r} returned shape {out.shape}; expected ({len(obs)},)")
        return out


def resolve_reward(name: str, env_id: str, declared_floor: float | None = None) -> RewardSpec:
    """The reward called `name` for `env_id`; `declared_floor` (task.reward_floor) bounds a reward that does not
    know its own floor (the env's, or a user's function without `reward_floor`)."""
    if name == "env":
        return RewardSpec("env", None, declared_floor, sparse=False)
    if name == "success":
        is_success = success_function(env_id)
        if is_success is None:
            raise ValueError(
                f"task.reward=success: {env_id} has no success test; name one (task.success: module:function) "
                "or use task.reward=env or module:function"
            )
        return RewardSpec("success", lambda obs, act, next_obs: is_success(next_obs).astype(np.float32), 0.0, True)
    if ":" in name:
        fn = load_object(name, "task.reward")
        floor = getattr(fn, "reward_floor", declared_floor)
        return RewardSpec(name, fn, None if floor is None else float(floor), bool(getattr(fn, "sparse", False)))
    raise ValueError(f"task.reward={name!r} is not one of {KINDS} or module:function")


class RelabelReward(gym.Wrapper):
    """Replace the simulator's reward with `spec(obs, action, next_obs)` (the executed action: wrap inside the
    safety filter)."""

    def __init__(self, env: gym.Env, spec: RewardSpec) -> None:
        super().__init__(env)
        self.reward_spec = spec
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        reward = float(self.reward_spec(self._obs[None], np.asarray(action)[None], np.asarray(obs)[None])[0])
        self._obs = np.asarray(obs)
        return obs, reward, terminated, truncated, {**info, "env_reward": float(env_reward)}

    def state_dict(self) -> dict[str, Any]:
        """The last observation (the next reward's `obs`), for mid-episode resume."""
        return {"obs": None if self._obs is None else self._obs.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._obs = None if state["obs"] is None else np.asarray(state["obs"]).copy()
