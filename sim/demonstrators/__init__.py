"""Scripted demonstrators. A task config names its own (`task.demos.demonstrator: module:Class`), which is
attached to the env id when the config loads (`sim.tasks.attach_task`)."""

from __future__ import annotations

import gymnasium as gym

from sim.demonstrators.pusher import PusherDemonstrator
from sim.demonstrators.reach_arm import ReachArmDemonstrator
from sim.demonstrators.sloppiness import QUALITY_LEVELS
from sim.tasks import task_hooks


def make_demonstrator(env: gym.Env, quality: float | str = "expert", seed: int | None = None):
    """The scripted demonstrator attached to `env`'s task; ValueError naming the env id if there is none."""
    env_id = env.spec.id if env.spec is not None else None
    factory = task_hooks(env_id).demonstrator
    if factory is None:
        raise ValueError(
            f"no scripted demonstrator for {env_id!r}: name one in its task config "
            "(task.demos.demonstrator: module:Class), or collect with --task NAME"
        )
    return factory(env, quality=quality, seed=seed)


__all__ = ["QUALITY_LEVELS", "PusherDemonstrator", "ReachArmDemonstrator", "make_demonstrator"]
