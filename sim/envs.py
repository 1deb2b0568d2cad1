"""Build seeded gymnasium environments (single or vectorised) with their task wrapper applied."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym

import sim.model_task  # noqa: F401  (registers the model-file tasks shipped with the project)
from sim.tasks import apply_task_wrapper, attach_hooks, task_hooks

EnvWrapper = Callable[[gym.Env], gym.Env]
VECTOR_MODES = ("sync", "async")


def make_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """`gym.make(env_id, **kwargs)` plus the task wrapper; with a seed, reset and action space are seeded.

    Seeding here makes the first reset (and every later unseeded reset) reproducible.
    """
    env = apply_task_wrapper(gym.make(env_id, **kwargs), env_id)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def make_vector_env(
    env_id: str,
    num_envs: int,
    seed: int | None = None,
    mode: str = "sync",
    wrappers: Sequence[EnvWrapper] = (),
    autoreset_mode: gym.vector.AutoresetMode | str = gym.vector.AutoresetMode.NEXT_STEP,
    context: str | None = None,
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` (sub-env i seeded `seed + i`), each wrapped: task wrapper, then `wrappers`.

    `mode` "async" runs sub-envs in worker processes (worth it for slow simulators); `autoreset_mode` is
    gymnasium's (NEXT_STEP by default; SAME_STEP puts the final observation in `info["final_obs"]`); `context`
    the async workers' start method (e.g. "spawn"; the task knowledge attached here travels with them).
    """
    if mode not in VECTOR_MODES:
        raise ValueError(f"unknown vector mode {mode!r}; use one of {VECTOR_MODES}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    fns = [_env_factory(env_id, None if seed is None else seed + i, tuple(wrappers), kwargs) for i in range(num_envs)]
    if mode == "sync":
        envs = gym.vector.SyncVectorEnv(fns, autoreset_mode=autoreset_mode)
    else:
        envs = gym.vector.AsyncVectorEnv(fns, autoreset_mode=autoreset_mode, context=context)
    if seed is not None:
        envs.action_space.seed(seed)
    return envs


def _env_factory(
    env_id: str, seed: int | None, wrappers: tuple[EnvWrapper, ...], kwargs: dict[str, Any]
) -> Callable[[], gym.Env]:
    hooks = task_hooks(env_id)  # what the parent's task config attached, carried into async worker processes

    def factory() -> gym.Env:
        attach_hooks(env_id, hooks)
        env = make_env(env_id, **kwargs)
        for wrap in wrappers:
            env = wrap(env)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    return factory
