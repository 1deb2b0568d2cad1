"""Calibrated Q-Learning (Nakamoto et al. 2023): CQL whose push-down cannot go below a reference value.

The Q values of the policy-sampled candidates (at s and at s', both evaluated at s) enter the
logsumexp as max(Q(s, a), V_ref(s)), with V_ref the Monte-Carlo return-to-go of the logged
behaviour (`batch.mc_returns`): CQL then stops pushing a policy action's value down once it is
below what the data already achieved, so the learned Q stays calibrated and online fine-tuning
does not start with an unlearning dip. Uniform candidates are not bounded. This is the
`enable_calql` branch of the official code (nakamotoo/Cal-QL, JaxCQL/conservative_sac.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from robo_offline.algos.cql import CQL, CQLConfig
from robo_offline.data import Batch


@dataclass
class CalQLConfig(CQLConfig):
    """Defaults of the official Cal-QL code (ConservativeSAC config + conservative_sac_main flags)."""

    name: str = "calql"
    # official default arch (its antmaze runs use a 4 x 256 critic)
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    cql_alpha: float = 5.0  # official cql_min_q_weight (offline phase)
    max_target_backup: bool = True  # official default
    orthogonal_init: bool = True  # official conservative_sac_main (with the 1e-2 output scale and log-std offset -1)


def calql_bound(q: Tensor, v_ref: Tensor) -> tuple[Tensor, Tensor]:
    """max(Q, V_ref) with V_ref (B,) broadcast over leading dims, and the mask of lifted entries (Q < V_ref)."""
    return torch.maximum(q, v_ref), q < v_ref


class CalQL(CQL):
    config_class = CalQLConfig
    needs_return_bound = True

    def bound_policy_q(self, q_cur: Tensor, q_next: Tensor, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Lift the policy candidates' Q values to V_ref(s); log the lifted fraction as `bound_rate`."""
        q_cur, lifted_cur = calql_bound(q_cur, batch.mc_returns)
        q_next, lifted_next = calql_bound(q_next, batch.mc_returns)
        bound_rate = torch.cat([lifted_cur.flatten(), lifted_next.flatten()]).float().mean()
        return q_cur, q_next, {"bound_rate": bound_rate}
