"""Action safety filter that ships inside every exported policy.

The filter is the last stage between a learned policy and the actuators. It is a
`torch.nn.Module` without data-dependent Python control flow, so the same code runs
eagerly, under `torch.jit.script` and under `torch.export` / AOTInductor.

Stages, in this order (the order is what makes the guarantees below hold):

1. non-finite guard: any NaN/inf in the observation or the raw action -> the raw
   action is replaced by the reference (the previous output, or `safe_action`
   before the first output after a reset);
2. bounds clamp to `[action_low, action_high]`;
3. joint-limit lookahead: a joint whose predicted position `q + qdot * control_period`
   is at/over a limit gets the action component that pushes it further (positive
   towards the upper limit, negative towards the lower one) zeroed;
4. rate limit: `|a_t - reference| <= max_delta`, reference as in stage 1, so the first
   output after a reset is limited relative to `safe_action`;
5. a final bounds clamp, which only removes float rounding (stage 4 interpolates
   between two in-bounds values).

Guarantees, for any observation and raw action (NaN, +-inf, 1e30 included):
the output is finite, inside the bounds, and within `max_delta` of the reference
(up to float32 rounding of `reference +- max_delta`). While a joint is predicted
at/over its upper limit, its action component is `<= max(0, reference - max_delta)`
(symmetrically for the lower limit): the push towards the limit never grows and decays
to zero as fast as the rate limit allows.

Not guaranteed: that a joint stays inside its limit (under torque control momentum
carries it past; the lookahead only stops *commanding* it further), anything about
timing (a late or missing command must be caught by a watchdog in the controller loop,
which a policy file cannot contain), or correctness of the sign convention (action
component k > 0 must drive its joint towards the upper limit).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

INTERVENTION_KINDS: Tuple[str, ...] = ("clamp", "joint_limit", "rate", "nonfinite")
"""Order of the entries in `SafetyFilter.intervention_counts`."""


@dataclass
class SafetyConfig:
    """What the filter enforces; plain data so it round-trips through YAML and JSON metadata."""

    action_low: List[float] = field(default_factory=list)
    action_high: List[float] = field(default_factory=list)
    max_delta: Optional[List[float]] = None  # per-step change limit; None = no rate limit
    safe_action: Optional[List[float]] = None  # None = 0 where 0 is in bounds, else the midpoint
    # Joint-limit lookahead: all None (off) or all given, one entry per joint.
    joint_pos_indices: Optional[List[int]] = None  # observation index of each joint position
    joint_vel_indices: Optional[List[int]] = None  # observation index of each joint velocity
    joint_lower: Optional[List[float]] = None
    joint_upper: Optional[List[float]] = None
    joint_action_indices: Optional[List[int]] = None  # action dim that drives each joint
    control_period: Optional[float] = None  # seconds per step, for the lookahead

    @classmethod
    def from_dict(cls, d: Dict[str, Any], validate: bool = True) -> "SafetyConfig":
        """Build and validate; unknown keys are an error so typos cannot silently disable a check.

        `validate=False` for a partial config that the robot's model completes (`sim.model_limits`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown safety config keys {unknown}; known keys are {sorted(known)}")
        config = cls(**{k: _plain(v) for k, v in d.items()})
        if validate:
            config.validate()
        return config

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def act_dim(self) -> int:
        return len(self.action_low)

    @property
    def num_joints(self) -> int:
        return len(self.joint_pos_indices or [])

    def resolved_safe_action(self) -> List[float]:
        """`safe_action`, or 0 where 0 is inside the bounds and the midpoint elsewhere."""
        if self.safe_action is not None:
            return [float(x) for x in self.safe_action]
        return [0.0 if lo <= 0.0 <= hi else 0.5 * lo + 0.5 * hi for lo, hi in zip(self.action_low, self.action_high)]

    def validate(self, obs_dim: Optional[int] = None, act_dim: Optional[int] = None) -> None:
        """Raise `ValueError` naming the first inconsistency; `obs_dim`/`act_dim` add range checks."""
        low, high = self.action_low, self.action_high
        if not low:
            raise ValueError("safety config: action_low/action_high are required (one entry per action dim)")
        if len(low) != len(high):
            raise ValueError(f"safety config: action_low has {len(low)} entries but action_high has {len(high)}")
        if act_dim is not None and len(low) != act_dim:
            raise ValueError(f"safety config: bounds have {len(low)} entries but the action has {act_dim} dims")
        _require_finite("action_low", low)
        _require_finite("action_high", high)
        bad = [i for i, (lo, hi) in enumerate(zip(low, high)) if lo > hi]
        if bad:
            raise ValueError(f"safety config: action_low > action_high at dims {bad}")
        if self.max_delta is not None:
            _require_length("max_delta", self.max_delta, len(low))
            if any(not math.isfinite(d) or d < 0 for d in self.max_delta):
                raise ValueError(
                    f"safety config: max_delta must be finite and >= 0 (got {self.max_delta}); "
                    "use max_delta: null for no rate limit"
                )
        if self.safe_action is not None:
            _require_length("safe_action", self.safe_action, len(low))
            _require_finite("safe_action", self.safe_action)
            outside = [i for i, (a, lo, hi) in enumerate(zip(self.safe_action, low, high)) if not lo <= a <= hi]
            if outside:
                raise ValueError(f"safety config: safe_action is outside [action_low, action_high] at dims {outside}")
        self._validate_joints(obs_dim)

    def _validate_joints(self, obs_dim: Optional[int]) -> None:
        names = ("joint_pos_indices", "joint_vel_indices", "joint_lower", "joint_upper", "joint_action_indices")
        given = [n for n in names if getattr(self, n) is not None]
        if not given:
            if self.control_period is not None and not (math.isfinite(self.control_period) and self.control_period > 0):
                raise ValueError(f"safety config: control_period must be finite and > 0, got {self.control_period}")
            return
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"safety config: joint-limit lookahead needs all of {list(names)}; missing {missing}")
        n = len(self.joint_pos_indices)
        for name in names[1:]:
            _require_length(name, getattr(self, name), n)
        period = self.control_period
        if period is None or not math.isfinite(period) or period <= 0:
            raise ValueError(f"safety config: joint-limit lookahead needs control_period > 0 (seconds), got {period}")
        _require_finite("joint_lower", self.joint_lower)
        _require_finite("joint_upper", self.joint_upper)
        bad = [j for j, (lo, hi) in enumerate(zip(self.joint_lower, self.joint_upper)) if lo >= hi]
        if bad:
            raise ValueError(f"safety config: joint_lower >= joint_upper for joints {bad}")
        for name in ("joint_pos_indices", "joint_vel_indices"):
            idx = getattr(self, name)
            if any(i < 0 or (obs_dim is not None and i >= obs_dim) for i in idx):
                raise ValueError(f"safety config: {name} {idx} out of range for observation dim {obs_dim}")
        act = self.joint_action_indices
        if any(i < 0 or i >= len(self.action_low) for i in act):
            raise ValueError(
                f"safety config: joint_action_indices {act} out of range for {len(self.action_low)} action dims"
            )
        if len(set(act)) != len(act):
            raise ValueError(
                f"safety config: joint_action_indices {act} repeat an action dim; one joint per action dim"
            )
        no_zero = [k for k in act if not self.action_low[k] <= 0.0 <= self.action_high[k]]
        if no_zero:
            raise ValueError(
                f"safety config: action dims {no_zero} drive limited joints, "
                "so 0 (no push) must lie inside their bounds"
            )


def _any_nonfinite(x: Tensor) -> Tensor:
    """Per row: any NaN/inf. `x - x` is 0 exactly for finite x (1e30 too), NaN otherwise; cheaper than isfinite."""
    return torch.isnan(x - x).any(dim=-1, keepdim=True)


def _plain(value: Any) -> Any:
    """OmegaConf ListConfig and tuples -> list, so configs compare and serialise as plain data."""
    if value is None or isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (int, float)):
        return value
    return [_plain(v) for v in value]


def _require_length(name: str, values: List[Any], expected: int) -> None:
    if len(values) != expected:
        raise ValueError(f"safety config: {name} has {len(values)} entries, expected {expected}")


def _require_finite(name: str, values: List[float]) -> None:
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"safety config: {name} must be finite, got {values}")


class SafetyFilter(nn.Module):
    """Stateful single-robot filter: `forward(obs (obs_dim,), action (act_dim,)) -> (act_dim,)`.

    State (previous output, whether one exists, intervention counts) lives in buffers, so it
    is saved with the module and cleared by `reset()`. `step()` is the same computation as a
    pure function of explicit state; it broadcasts over leading batch dims, which is what the
    `.pt2` export and vectorised simulators use.
    """

    def __init__(self, config: SafetyConfig, obs_dim: Optional[int] = None) -> None:
        super().__init__()
        config.validate(obs_dim=obs_dim)
        self.config = config
        f32 = torch.float32
        act_dim = config.act_dim
        self.register_buffer("action_low", torch.tensor(config.action_low, dtype=f32))
        self.register_buffer("action_high", torch.tensor(config.action_high, dtype=f32))
        max_delta = config.max_delta if config.max_delta is not None else [math.inf] * act_dim
        self.register_buffer("max_delta", torch.tensor(max_delta, dtype=f32))
        self.register_buffer("safe_action", torch.tensor(config.resolved_safe_action(), dtype=f32))
        # Joint lookahead laid out per action dim; NaN limits on dims without a joint make
        # every comparison False, so no masks or scatters are needed in forward.
        pos_idx, vel_idx = [0] * act_dim, [0] * act_dim
        lower, upper = [math.nan] * act_dim, [math.nan] * act_dim
        for j, k in enumerate(config.joint_action_indices or []):
            pos_idx[k], vel_idx[k] = config.joint_pos_indices[j], config.joint_vel_indices[j]
            lower[k], upper[k] = config.joint_lower[j], config.joint_upper[j]
        self.register_buffer("joint_pos_idx", torch.tensor(pos_idx, dtype=torch.long))
        self.register_buffer("joint_vel_idx", torch.tensor(vel_idx, dtype=torch.long))
        self.register_buffer("joint_lower", torch.tensor(lower, dtype=f32))
        self.register_buffer("joint_upper", torch.tensor(upper, dtype=f32))
        self.control_period: float = float(config.control_period or 0.0)
        self.num_kinds: int = len(INTERVENTION_KINDS)
        self.register_buffer("prev_action", self.safe_action.clone())
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))
        self.register_buffer("intervention_counts", torch.zeros(len(INTERVENTION_KINDS), dtype=torch.long))

    @torch.jit.export
    def reset(self) -> None:
        """Forget the previous action and the counts: the next output is limited relative to `safe_action`."""
        self.prev_action.copy_(self.safe_action)
        self.has_prev.fill_(False)
        self.intervention_counts.zero_()

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        out, prev, has_prev, counts = self.step(obs, action, self.prev_action, self.has_prev, self.intervention_counts)
        self.prev_action.copy_(prev)
        self.has_prev.copy_(has_prev)
        self.intervention_counts.copy_(counts)
        return out

    @torch.jit.export
    def step(
        self, obs: Tensor, action: Tensor, prev_action: Tensor, has_prev: Tensor, counts: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pure filter step: returns `(action, new_prev_action, new_has_prev, new_counts)`."""
        obs = obs.to(self.action_low.dtype)
        action = action.to(self.action_low.dtype)
        reference = torch.where(has_prev, prev_action, self.safe_action)
        nonfinite = _any_nonfinite(torch.cat([obs, action], dim=-1))
        candidate = torch.where(nonfinite, reference, action)
        bounded = torch.clamp(candidate, self.action_low, self.action_high)
        joint_safe = self._block_pushes_past_joint_limits(obs, bounded)
        limited = torch.clamp(joint_safe, reference - self.max_delta, reference + self.max_delta)
        out = torch.clamp(limited, self.action_low, self.action_high)
        # Which stage changed the action (clamp, joint_limit, rate: a stage's output differs from its
        # input), then non-finite; as few ops as the interpreter allows, since each costs about 1 us.
        changed = (
            torch.stack([bounded, joint_safe, out], dim=-2) != torch.stack([candidate, bounded, joint_safe], dim=-2)
        ).any(dim=-1)
        events = torch.cat([changed, nonfinite], dim=-1)
        new_counts = counts + events.reshape(-1, self.num_kinds).sum(dim=0)
        return out, out, torch.ones_like(has_prev), new_counts

    def _block_pushes_past_joint_limits(self, obs: Tensor, action: Tensor) -> Tensor:
        """Zero the component pushing a joint further past a limit it is predicted to reach this step.

        NaN observations give no prediction (comparisons are False); +-inf predict "at the limit".
        """
        q = obs.index_select(-1, self.joint_pos_idx)
        qdot = obs.index_select(-1, self.joint_vel_idx)
        predicted = q + qdot * self.control_period
        ceiling = torch.where(predicted >= self.joint_upper, 0.0, math.inf)
        floor = torch.where(predicted <= self.joint_lower, 0.0, -math.inf)
        return torch.clamp(action, floor, ceiling)

    def interventions(self) -> Dict[str, int]:
        """Counts since the last reset: number of steps on which each kind of intervention changed the action."""
        return dict(zip(INTERVENTION_KINDS, (int(c) for c in self.intervention_counts.tolist())))
