"""Calibration: how a critic's Q estimate compares with the return the policy actually got.

Cal-QL's promise is a critic that neither over- nor underestimates the policy's value; this
measures it on evaluation episodes (Q of the executed actions against their discounted
Monte-Carlo return, both in training reward units).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deploy.units import EnvUnits
from robo_offline.algos import Algorithm
from robo_offline.data.returns import compute_mc_returns
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
    # One episode per call: its last step always ends the sum, so no other episode end is marked.
    mc = np.concatenate(
        [
            compute_mc_returns(to_unit.reward(e.rewards), e.terminations, np.zeros(e.length, dtype=bool), gamma)
            for e in episodes
        ]
    )
    return {"q_estimate": float(q.mean()), "mc_return": float(mc.mean())}
