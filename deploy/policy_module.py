"""The modules that get evaluated and exported: normalise -> policy core -> scale (-> safety filter).

Everything a controller needs between a raw sensor vector and an actuator command lives
in one module, so the exported file cannot be run without its normaliser or its filter.
"""

from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor, nn

from deploy.safety import SafetyConfig, SafetyFilter
from deploy.units import EnvUnits


class EnvPolicy(nn.Module):
    """A policy core in environment units: raw observations (B, obs_dim) -> env-unit actions (B, act_dim).

    `core` maps normalised observations to actions in [-1, 1]; `units` does both crossings.
    Batched and stateless: simulation evaluates this module (the safety filter runs there as an
    environment wrapper, per sub-environment), and `DeployedPolicy` exports it with the filter.
    """

    def __init__(self, core: nn.Module, units: EnvUnits) -> None:
        super().__init__()
        self.core = core
        self.units = units

    def forward(self, obs: Tensor) -> Tensor:
        return self.units.action_to_env(self.core(self.units.obs(obs)))

    @torch.jit.unused
    def act(self, obs: Any) -> Any:
        """numpy in, numpy out (batched or one observation), on the module's device."""
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.units.obs_mean.device)
        with torch.no_grad():
            action = self(x.unsqueeze(0)).squeeze(0) if x.dim() == 1 else self(x)
        return action.cpu().numpy()


class DeployedPolicy(nn.Module):
    """Single-robot policy: `forward(obs (obs_dim,)) -> action (act_dim,)`, stateful through the filter.

    `EnvPolicy` (normalise -> core -> scale to the action bounds) followed by the safety filter.
    With `last_action_input` the policy sees the observation followed by the filter's previous
    output (`safe_action` after a reset), as it did in training (`sim.wrappers.LastActionObservation`);
    the caller still passes the plain observation. Observations are cast to float32. One robot per
    module: the filter's rate limiter remembers one previous action, so a batch has no meaning here.
    """

    def __init__(self, core: nn.Module, units: EnvUnits, safety: SafetyConfig, last_action_input: bool = False) -> None:
        super().__init__()
        obs_dim = units.obs_dim - (units.act_dim if last_action_input else 0)
        safety.validate(obs_dim=obs_dim, act_dim=units.act_dim)
        self.policy = EnvPolicy(core, units)
        self.safety = SafetyFilter(safety, obs_dim=obs_dim)
        self.last_action_input = last_action_input
        self.obs_dim = obs_dim

    @torch.jit.export
    def reset(self) -> None:
        """Call at the start of every episode / after every controller restart."""
        self.safety.reset()

    @torch.jit.export
    def raw_action(self, obs: Tensor) -> Tensor:
        """The policy's action before the safety filter (may be NaN if obs is)."""
        return self.raw_action_after(obs, self.safety.prev_action)

    @torch.jit.export
    def raw_action_after(self, obs: Tensor, last_action: Tensor) -> Tensor:
        """The policy's action for `obs` when the filter's previous output was `last_action`."""
        x = obs.to(torch.float32)
        if self.last_action_input:
            x = torch.cat([x, last_action])
        return self.policy(x.unsqueeze(0)).squeeze(0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.safety(obs, self.raw_action(obs))


class StatelessDeployedPolicy(nn.Module):
    """`DeployedPolicy` with the filter state passed in and out, for the `.pt2` export.

    An AOTInductor package has one entry point and no `reset()`; with explicit state the
    package is a pure function, reset is "start from the initial state" on the caller's
    side, and any runtime (Python or C++) can hold the state. `deploy.runtime` wraps it
    back into the stateful `reset()`/`__call__` interface.
    """

    def __init__(self, policy: DeployedPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, obs: Tensor, prev_action: Tensor, has_prev: Tensor, intervention_counts: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        raw = self.policy.raw_action_after(obs, prev_action)
        return self.policy.safety.step(obs.to(torch.float32), raw, prev_action, has_prev, intervention_counts)

    def initial_state(self) -> Tuple[Tensor, Tensor, Tensor]:
        """`(prev_action, has_prev, intervention_counts)` right after a reset."""
        safety = self.policy.safety
        return (
            safety.safe_action.clone(),
            torch.zeros((), dtype=torch.bool),
            torch.zeros_like(safety.intervention_counts),
        )
