"""One recorded episode: the unit that rollouts produce and demo-log writers consume."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    """Arrays of one episode in gymnasium's convention.

    `observations` has T+1 rows (the last is the observation after the final step), every
    other array has T rows. `actions` are the *executed* actions: after any safety filter.
    A truncation (time limit) is not a termination: bootstrapping continues through it.
    """

    observations: np.ndarray  # (T+1, obs_dim) float32
    actions: np.ndarray  # (T, act_dim) float32
    rewards: np.ndarray  # (T,) float32
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    success: bool | None = None  # None where the environment reports no success
    infos: dict[str, np.ndarray] = field(default_factory=dict)  # optional per-step scalars

    def __post_init__(self) -> None:
        t = len(self.actions)
        if len(self.observations) != t + 1:
            raise ValueError(f"episode has {len(self.observations)} observations for {t} actions; expected T+1")
        for name in ("rewards", "terminations", "truncations"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"episode field {name!r} has {len(getattr(self, name))} rows; expected {t}")

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))
