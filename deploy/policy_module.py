"""The module that gets exported: normalise -> policy core -> scale -> safety filter.

Everything a controller needs between a raw sensor vector and an actuator command lives
in one module, so the exported file cannot be run without its normaliser or its filter.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from deploy.safety import SafetyConfig, SafetyFilter


class DeployedPolicy(nn.Module):
    """Single-robot policy: `forward(obs (obs_dim,)) -> action (act_dim,)`, stateful through the filter.

    `core` maps normalised observations (B, obs_dim) to actions in [-1, 1] (B, act_dim);
    its output is scaled affinely to `[action_low, action_high]` and then filtered.
    Observations are cast to float32. One robot per module: the filter's rate limiter
    remembers one previous action, so a batch has no meaning here (use `SafetyFilter.step`).
    """

    def __init__(
        self,
        core: nn.Module,
        obs_mean: Tensor,
        obs_std: Tensor,
        action_low: Tensor,
        action_high: Tensor,
        safety: SafetyConfig,
    ) -> None:
        super().__init__()
        obs_dim, act_dim = obs_mean.numel(), action_low.numel()
        if obs_std.shape != obs_mean.shape or action_high.shape != action_low.shape:
            raise ValueError("obs_mean/obs_std and action_low/action_high must have matching shapes")
        if not bool(torch.isfinite(obs_std).all() & (obs_std > 0).all()) or not bool(torch.isfinite(obs_mean).all()):
            raise ValueError("normaliser statistics must be finite with obs_std > 0 (add the training epsilon to std)")
        bounds_ok = torch.isfinite(action_low).all() & torch.isfinite(action_high).all() & (action_low <= action_high).all()
        if not bool(bounds_ok):
            raise ValueError("action_low/action_high must be finite with action_low <= action_high")
        safety.validate(obs_dim=obs_dim, act_dim=act_dim)
        self.core = core
        f64 = torch.float64  # centre/half-range in float64 so huge bounds cannot overflow high - low
        self.register_buffer("obs_mean", obs_mean.to(torch.float32).reshape(obs_dim))
        self.register_buffer("obs_std", obs_std.to(torch.float32).reshape(obs_dim))
        low, high = action_low.to(f64).reshape(act_dim), action_high.to(f64).reshape(act_dim)
        self.register_buffer("action_centre", (0.5 * low + 0.5 * high).float())
        self.register_buffer("action_half_range", (0.5 * high - 0.5 * low).float())
        self.safety = SafetyFilter(safety, obs_dim=obs_dim)

    @torch.jit.export
    def reset(self) -> None:
        """Call at the start of every episode / after every controller restart."""
        self.safety.reset()

    @torch.jit.export
    def raw_action(self, obs: Tensor) -> Tensor:
        """The policy's action before the safety filter (may be NaN if obs is)."""
        normalized = (obs.to(torch.float32) - self.obs_mean) / self.obs_std
        unit = self.core(normalized.unsqueeze(0)).squeeze(0)
        return torch.addcmul(self.action_centre, self.action_half_range, unit)

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
        raw = self.policy.raw_action(obs)
        return self.policy.safety.step(obs.to(torch.float32), raw, prev_action, has_prev, intervention_counts)

    def initial_state(self) -> Tuple[Tensor, Tensor, Tensor]:
        """`(prev_action, has_prev, intervention_counts)` right after a reset."""
        safety = self.policy.safety
        return (
            safety.safe_action.clone(),
            torch.zeros((), dtype=torch.bool),
            torch.zeros_like(safety.intervention_counts),
        )
