"""Scripted demonstrators, one per task, looked up by gymnasium env id."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from sim.demonstrators.pusher import PusherDemonstrator
from sim.demonstrators.reach_arm import ReachArmDemonstrator
from sim.demonstrators.sloppiness import QUALITY_LEVELS
from sim.model_task import REACH_ARM_ID

DemonstratorFactory = Callable[..., Callable]

DEMONSTRATORS: dict[str, DemonstratorFactory] = {
    "Pusher-v5": PusherDemonstrator,
    REACH_ARM_ID: ReachArmDemonstrator,
}


def make_demonstrator(env: gym.Env, quality: float | str = "expert", seed: int | None = None):
    """The scripted demonstrator for `env`'s task; ValueError naming the env id if there is none."""
    env_id = env.spec.id if env.spec is not None else None
    factory = DEMONSTRATORS.get(env_id)
    if factory is None:
        raise ValueError(f"no scripted demonstrator for {env_id!r}; available: {sorted(DEMONSTRATORS)}")
    return factory(env, quality=quality, seed=seed)


__all__ = ["DEMONSTRATORS", "QUALITY_LEVELS", "PusherDemonstrator", "ReachArmDemonstrator", "make_demonstrator"]
