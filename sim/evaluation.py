"""Policy evaluation: the one protocol every score of this project is measured with.

Episode k of an evaluation starts from `reset(seed=seed + k)`, one episode after another in one
environment, so two evaluations with the same seed and episode count see the same start states
(the offline and the fine-tuned row of a table, every point of a learning curve).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sim.behaviours import Behaviour
from sim.envs import EnvWrapper, make_env
from sim.episode import Episode
from sim.rollout import rollout_episodes
from sim.scores import normalized_score

METRICS = ("mean_return", "std_return", "success_rate", "normalized_score")


@dataclass(frozen=True)
class EvalResult:
    mean_return: float
    std_return: float
    success_rate: float | None  # None where the env reports no success
    normalized_score: float | None  # None where the env has no reference returns
    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    seeds: tuple[int, ...]  # reset seed of each episode
    episodes: tuple[Episode, ...] = field(default=(), compare=False, repr=False)

    def metrics(self) -> dict[str, float | None]:
        """The summary statistics (what a metrics row or a table cell holds)."""
        return {k: getattr(self, k) for k in METRICS}

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-friendly values (tuples become lists; the episodes are left out)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k != "episodes"}


def evaluate(
    behaviour: Behaviour,
    env_id: str,
    n_episodes: int = 10,
    seed: int = 0,
    wrappers: Sequence[EnvWrapper] = (),
    progress: bool = False,
    env_reward: bool = True,
    **env_kwargs: Any,
) -> EvalResult:
    """Run `behaviour` for `n_episodes` episodes of `env_id`, episode k seeded `seed + k`.

    `wrappers` go around the task's env in order (e.g. the safety filter, as deployed). Wrap a plain
    `obs -> action` function, or an exported policy, in `sim.behaviours.PolicyBehaviour`. `env_reward=False`
    says a wrapper replaced the env's reward (`sim.rewards`): its returns then get no normalised score.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    env = make_env(env_id, **env_kwargs)
    for wrap in wrappers:
        env = wrap(env)
    try:
        episodes = rollout_episodes(env, behaviour, n_episodes, seed=seed, progress=progress, desc=f"eval {env_id}")
    finally:
        env.close()
    return summarize(env_id if env_reward else None, episodes, seeds=range(seed, seed + n_episodes))


def summarize(env_id: str | None, episodes: Sequence[Episode], seeds: Sequence[int] = ()) -> EvalResult:
    """Return, success and normalised score of recorded episodes (evaluations and logged demos alike)."""
    returns = np.array([e.total_return for e in episodes], dtype=np.float64)
    successes = [e.success for e in episodes if e.success is not None]
    mean = float(returns.mean())
    return EvalResult(
        mean_return=mean,
        std_return=float(returns.std()),
        success_rate=float(np.mean(successes)) if successes else None,
        normalized_score=normalized_score(env_id, mean) if env_id else None,
        returns=tuple(float(r) for r in returns),
        lengths=tuple(e.length for e in episodes),
        seeds=tuple(int(s) for s in seeds),
        episodes=tuple(episodes),
    )
