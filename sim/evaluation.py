"""Policy evaluation on gymnasium vector envs: exactly n complete episodes, deterministic for a seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from sim.behaviours import Behaviour
from sim.envs import EnvWrapper, make_env, make_vector_env
from sim.rollout import SUCCESS_KEY, rollout_episodes
from sim.scores import normalized_score

BatchedPolicy = Callable[[np.ndarray], np.ndarray]  # (n, obs_dim) -> (n, act_dim)
DEFAULT_MAX_ENVS = 4


@dataclass(frozen=True)
class EpisodeOutcome:
    ret: float
    length: int
    success: bool | None


@dataclass(frozen=True)
class EvalResult:
    mean_return: float
    std_return: float
    success_rate: float | None  # None where the env reports no success
    normalized_score: float | None  # None where the env has no reference returns
    returns: tuple[float, ...]
    lengths: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-friendly values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def evaluate(policy: BatchedPolicy, env_id: str, n_episodes: int = 10, seed: int = 0, num_envs: int | None = None,
             wrappers: Sequence[EnvWrapper] = (), mode: str = "sync", **env_kwargs: Any) -> EvalResult:
    """Run `policy` on `num_envs` parallel copies of `env_id` until exactly `n_episodes` have finished.

    Sub-env i is seeded `seed + i` and contributes a fixed share of the episodes (so short episodes are not
    over-represented); the result depends only on (policy, seed, num_envs).
    """
    num_envs = num_envs or min(n_episodes, DEFAULT_MAX_ENVS)
    envs = make_vector_env(env_id, num_envs, seed=seed, mode=mode, wrappers=wrappers, **env_kwargs)
    try:
        outcomes = run_vector_episodes(envs, policy, n_episodes, seed=seed)
    finally:
        envs.close()
    return summarize(env_id, outcomes)


def evaluate_behaviour(behaviour: Behaviour, env_id: str, n_episodes: int = 10, seed: int = 0,
                       wrappers: Sequence[EnvWrapper] = (), progress: bool = False, **env_kwargs: Any) -> EvalResult:
    """Single-env evaluation of a `Behaviour` (e.g. a scripted demonstrator); episode k is seeded `seed + k`."""
    env = make_env(env_id, **env_kwargs)
    for wrap in wrappers:
        env = wrap(env)
    try:
        episodes = rollout_episodes(env, behaviour, n_episodes, seed=seed, progress=progress, desc=f"eval {env_id}")
    finally:
        env.close()
    return summarize(env_id, [EpisodeOutcome(e.total_return, e.length, e.success) for e in episodes])


def run_vector_episodes(envs: gym.vector.VectorEnv, policy: BatchedPolicy, n_episodes: int,
                        seed: int | None = None) -> list[EpisodeOutcome]:
    """Step `envs` with `policy` until each sub-env has finished its share of `n_episodes`.

    Handles both gymnasium autoreset modes: with NEXT_STEP the step after an episode's end only resets that
    sub-env (its action, reward and info are ignored); with SAME_STEP the final info is in `final_info`.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    mode = gym.vector.AutoresetMode(envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP))
    if mode is gym.vector.AutoresetMode.DISABLED:
        raise ValueError("run_vector_episodes needs an autoresetting vector env (NEXT_STEP or SAME_STEP)")
    n = envs.num_envs
    quotas = [n_episodes // n + (i < n_episodes % n) for i in range(n)]
    finished: list[list[EpisodeOutcome]] = [[] for _ in range(n)]
    returns, lengths = np.zeros(n), np.zeros(n, dtype=np.int64)
    resetting = np.zeros(n, dtype=bool)
    obs, _ = envs.reset(seed=seed)
    while any(len(done_i) < quota for done_i, quota in zip(finished, quotas)):
        obs, rewards, terminated, truncated, info = envs.step(np.asarray(policy(obs)))
        live = ~resetting
        returns[live] += np.asarray(rewards, dtype=np.float64)[live]
        lengths[live] += 1
        ended = (np.asarray(terminated) | np.asarray(truncated)) & live
        for i in np.flatnonzero(ended):
            if len(finished[i]) < quotas[i]:
                finished[i].append(EpisodeOutcome(float(returns[i]), int(lengths[i]), _final_success(info, i, mode)))
            returns[i], lengths[i] = 0.0, 0
        resetting = ended if mode is gym.vector.AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
    return [outcome for outcomes in finished for outcome in outcomes]


def summarize(env_id: str, outcomes: Sequence[EpisodeOutcome]) -> EvalResult:
    returns = np.array([o.ret for o in outcomes], dtype=np.float64)
    successes = [o.success for o in outcomes if o.success is not None]
    mean = float(returns.mean())
    return EvalResult(
        mean_return=mean,
        std_return=float(returns.std()),
        success_rate=float(np.mean(successes)) if successes else None,
        normalized_score=normalized_score(env_id, mean),
        returns=tuple(float(r) for r in returns),
        lengths=tuple(int(o.length) for o in outcomes),
    )


def _final_success(info: dict[str, Any], i: int, mode: gym.vector.AutoresetMode) -> bool | None:
    """Sub-env i's `is_success` at the step its episode ended, None if it reports none."""
    if mode is gym.vector.AutoresetMode.SAME_STEP:
        info = info.get("final_info", {})
    if SUCCESS_KEY not in info or not np.asarray(info.get(f"_{SUCCESS_KEY}", np.ones(i + 1, bool)))[i]:
        return None
    return bool(np.asarray(info[SUCCESS_KEY])[i])
