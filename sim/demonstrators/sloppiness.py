"""How a scripted demonstrator of lower quality deviates from its expert, shared by every demonstrator.

The quality knob (`expert`, `medium`, `poor` or a number in [0, 1]) sets the sloppiness; `SloppyActions`
applies it to the expert's commands: bursts of held uniform-random actions and Gaussian noise, seeded per
episode. It is the only state a demonstrator keeps between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUALITY_LEVELS: dict[str, float] = {"expert": 1.0, "medium": 0.6, "poor": 0.0}


@dataclass(frozen=True)
class Sloppiness:
    """How a demonstrator of a given quality deviates from the expert (quality 1: not at all)."""

    quality: float
    action_noise: float  # std of Gaussian torque noise, N m (actions span [-2, 2])
    burst_probability: float  # chance per step of starting a burst of held uniform-random torques
    burst_steps: tuple[int, int]  # burst length range [low, high)
    gain_scale: float  # softens the operational-space position gain
    press_scale: float  # shallower presses push the puck more slowly

    @classmethod
    def at(cls, quality: float | str) -> Sloppiness:
        q = resolve_quality(quality)
        s = 1.0 - q
        return cls(
            q,
            action_noise=0.5 * s,
            burst_probability=0.05 * s,
            burst_steps=(3, 8),
            gain_scale=1.0 - 0.25 * s,
            press_scale=1.0 - 0.2 * s,
        )


def resolve_quality(quality: float | str) -> float:
    """A named level or a number in [0, 1] (1 = expert)."""
    if isinstance(quality, str):
        if quality in QUALITY_LEVELS:
            return QUALITY_LEVELS[quality]
        try:
            quality = float(quality)
        except ValueError:
            levels = sorted(QUALITY_LEVELS)
            raise ValueError(f"unknown quality {quality!r}; use one of {levels} or a number in [0, 1]") from None
    if not 0.0 <= float(quality) <= 1.0:
        raise ValueError(f"quality must be in [0, 1], got {quality}")
    return float(quality)


class SloppyActions:
    """The sloppiness applied to an expert's actions; `noise_std` in action units (a scalar or per dimension).

    `reset(seed)` at each episode start: a seed restarts the random stream, None continues it.
    """

    def __init__(self, sloppiness: Sloppiness, low: np.ndarray, high: np.ndarray, noise_std, seed: int | None = None):
        self.sloppiness, self.low, self.high, self.noise_std = sloppiness, low, high, noise_std
        self._rng = np.random.default_rng(seed)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._burst: np.ndarray | None = None
        self._burst_left = 0

    def __call__(self, action: np.ndarray) -> np.ndarray:
        s = self.sloppiness
        if self._burst_left > 0:
            self._burst_left -= 1
            return self._burst
        if s.burst_probability > 0 and self._rng.random() < s.burst_probability:
            self._burst = self._rng.uniform(self.low, self.high)
            self._burst_left = int(self._rng.integers(*s.burst_steps)) - 1
            return self._burst
        if s.action_noise > 0:
            action = action + self._rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action, self.low, self.high)
