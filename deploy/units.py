"""`EnvUnits`: the one transform between environment units and the units a policy is trained in.

Training sees normalised observations, actions in [-1, 1] and (optionally) affinely scaled
rewards; the environment and the robot speak raw sensor values and actuator commands. Every
crossing between the two (the dataset view, online collection, evaluation in simulation and the
exported file) goes through this module, so the formulas exist once and the exported file runs
exactly what simulation evaluated. Torch only (numpy is never imported here); the `numpy` view
serves gymnasium's arrays.
"""

from __future__ import annotations

from typing import Any, Dict, Union

import torch
from torch import Tensor, nn

ArrayLike = Union[Tensor, Any]  # Any: numpy arrays and sequences, taken via torch.as_tensor
STATE_KEYS = ("obs_mean", "obs_std", "action_centre", "action_half_range", "reward_scale", "reward_shift")


class EnvUnits(nn.Module):
    """obs -> (obs - mean) / std; unit action a in [-1, 1] <-> centre + half_range * a; r -> r * scale + shift.

    All buffers are float32 (any device, MPS included). The action centre and half-range are
    computed in float64, so bounds as large as 1e38 cannot overflow `high - low`.
    """

    __jit_unused_properties__ = ["numpy", "action_low", "action_high", "obs_dim", "act_dim"]

    def __init__(
        self,
        obs_mean: ArrayLike,
        obs_std: ArrayLike,
        action_low: ArrayLike,
        action_high: ArrayLike,
        reward_scale: float = 1.0,
        reward_shift: float = 0.0,
    ) -> None:
        super().__init__()
        mean, std = _vector(obs_mean, "obs_mean"), _vector(obs_std, "obs_std")
        low, high = _vector(action_low, "action_low"), _vector(action_high, "action_high")
        _check(mean, std, low, high)
        self.register_buffer("obs_mean", mean.float())
        self.register_buffer("obs_std", std.float())
        self.register_buffer("action_centre", (0.5 * low + 0.5 * high).float())
        self.register_buffer("action_half_range", (0.5 * high - 0.5 * low).float())
        self.register_buffer("reward_scale", torch.tensor(float(reward_scale)))
        self.register_buffer("reward_shift", torch.tensor(float(reward_shift)))

    @classmethod
    def identity(cls, obs_dim: int, action_low: ArrayLike, action_high: ArrayLike) -> EnvUnits:
        """No observation normalisation and no reward transform: only the action scaling."""
        return cls(torch.zeros(obs_dim), torch.ones(obs_dim), action_low, action_high)

    @classmethod
    def from_state(cls, state: Dict[str, Tensor]) -> EnvUnits:
        """Rebuild from `state_dict()` (as stored in a checkpoint); the error names a missing entry."""
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            raise KeyError(f"EnvUnits state lacks {missing}; expected {list(STATE_KEYS)}")
        centre = state["action_centre"].cpu().double()
        half = state["action_half_range"].cpu().double()
        units = cls(state["obs_mean"], state["obs_std"], centre - half, centre + half)
        units.load_state_dict(state)  # the exact stored values, not a float64 round trip
        return units

    # -- the transform ------------------------------------------------------------------------
    def obs(self, obs: Tensor) -> Tensor:
        """Raw observations (..., obs_dim) -> normalised float32."""
        return (obs.to(torch.float32) - self.obs_mean) / self.obs_std

    def action_to_env(self, unit: Tensor) -> Tensor:
        """Policy actions in [-1, 1] (clamped there first) -> environment units; NaN stays NaN."""
        return torch.addcmul(self.action_centre, self.action_half_range, unit.clamp(-1.0, 1.0))

    def action_to_unit(self, action: Tensor) -> Tensor:
        """Environment-unit actions -> [-1, 1] (clamped, so values at the bounds' rounding stay inside)."""
        return ((action.to(torch.float32) - self.action_centre) / self.action_half_range).clamp(-1.0, 1.0)

    def reward(self, reward: Tensor) -> Tensor:
        """Logged or simulated rewards -> training rewards (float32)."""
        return reward.to(torch.float32) * self.reward_scale + self.reward_shift

    # -- views ----------------------------------------------------------------------------------
    @property
    def numpy(self) -> _NumpyUnits:
        """The same transform on numpy arrays (float32 out), e.g. `units.numpy.obs(env_obs)`."""
        return _NumpyUnits(self)

    @property
    def action_low(self) -> Tensor:
        """The bounds [-1, 1] maps to (CPU, float64: centre and half-range are float32)."""
        return self.action_centre.cpu().double() - self.action_half_range.cpu().double()

    @property
    def action_high(self) -> Tensor:
        return self.action_centre.cpu().double() + self.action_half_range.cpu().double()

    @property
    def obs_dim(self) -> int:
        return self.obs_mean.numel()

    @property
    def act_dim(self) -> int:
        return self.action_centre.numel()

    def describe(self) -> Dict[str, Any]:
        """JSON-friendly values, for metadata and run records."""
        return {
            "obs_mean": self.obs_mean.tolist(),
            "obs_std": self.obs_std.tolist(),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "reward_scale": float(self.reward_scale),
            "reward_shift": float(self.reward_shift),
        }


class _NumpyUnits:
    """numpy entry points of an `EnvUnits` (computed by the torch methods: one formula)."""

    def __init__(self, units: EnvUnits) -> None:
        self._units = units

    def _apply(self, fn: Any, x: ArrayLike) -> Any:
        device = self._units.obs_mean.device
        with torch.no_grad():
            out = fn(torch.as_tensor(x, dtype=torch.float32, device=device))
        return out.cpu().numpy()

    def obs(self, obs: ArrayLike) -> Any:
        return self._apply(self._units.obs, obs)

    def action_to_env(self, unit: ArrayLike) -> Any:
        return self._apply(self._units.action_to_env, unit)

    def action_to_unit(self, action: ArrayLike) -> Any:
        return self._apply(self._units.action_to_unit, action)

    def reward(self, reward: ArrayLike) -> Any:
        return self._apply(self._units.reward, reward)


def _vector(values: ArrayLike, name: str) -> Tensor:
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be array-like numbers: {err}") from err
    return tensor.detach().to(device="cpu", dtype=torch.float64).reshape(-1)


def _check(mean: Tensor, std: Tensor, low: Tensor, high: Tensor) -> None:
    if mean.shape != std.shape or low.shape != high.shape:
        raise ValueError("obs_mean/obs_std and action_low/action_high must have matching shapes")
    if not bool(torch.isfinite(mean).all() & torch.isfinite(std).all() & (std > 0).all()):
        raise ValueError("normaliser statistics must be finite with obs_std > 0 (add the training epsilon to std)")
    if not bool(torch.isfinite(low).all() & torch.isfinite(high).all() & (low < high).all()):
        raise ValueError("action bounds must be finite with action_low < action_high in every dimension")
