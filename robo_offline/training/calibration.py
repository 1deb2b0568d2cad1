"""Calibration: how a critic's Q estimate compares with the return the policy actually got.

Cal-QL's promise is a critic that neither over- nor underestimates the policy's value; this
measures it on evaluation episodes (Q of the executed actions against their discounted
Monte-Carlo return, both in training reward units). The critic bootstraps through time limits,
so it predicts an infinite-horizon value: an episode cut by its time limit is continued with its
last reward (`continued_returns`, the official Cal-QL code's infinite-horizon mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deploy.units import EnvUnits
from robo_offline.algos import Algorithm
from robo_offline.data.returns import continued_returns
from sim.episode import Episode


@torch.no_grad()
def calibration(algo: Algorithm, units: EnvUnits, episodes: Sequence[Episode], gamma: float) -> dict[str, float]:
    """{"q_estimate", "mc_return"}: means over every step of `episodes`; empty for methods without a critic."""
    device = units.obs_mean.device
    to_unit = units.numpy
    obs = torch.as_tensor(np.concatenate([to_unit.obs(e.observations[:-1]) for e in episodes]), device=device)
    act = torch.as_tensor(np.concatenate([to_unit.action_to_unit(e.actions) for e in episodes]), device=device)
    q = algo.q_values(obs, act)
    if q is None:
        return {}
    mc = np.concatenate(
        [continued_returns(to_unit.reward(e.rewards), e.terminations, _cut(e), gamma) for e in episodes]
    )
    return {"q_estimate": float(q.mean()), "mc_return": float(mc.mean())}


def _cut(episode: Episode) -> np.ndarray:
    """The episode's time-limit cut: its last step, unless that step terminated it."""
    cut = np.zeros(episode.length, dtype=bool)
    cut[-1] = not bool(episode.terminations[-1])
    return cut
