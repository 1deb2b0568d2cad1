"""Checks on `RawTransitions`: finiteness, dimensions against gymnasium spaces, action bounds."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from robo_offline.data.errors import DatasetError
from robo_offline.data.raw import FLOAT_FIELDS, RawTransitions

ACTION_BOUND_TOLERANCE = 1e-6
NONFINITE_POLICIES = ("fail", "drop")


def nonfinite_rows(raw: RawTransitions) -> tuple[np.ndarray | None, dict[str, int]]:
    """Rows with a NaN/inf in any float field (None if there are none) and the count per field.

    A sum is finite only if every term is, so one fast reduction clears a clean array; only
    arrays whose sum is not finite (a bad value, or a rare overflow) get the exact scan.
    """
    bad: np.ndarray | None = None
    counts: dict[str, int] = {}
    for name in FLOAT_FIELDS:
        array = getattr(raw, name)
        if name == "next_observations" and array is raw.observations:
            continue
        if name == "actions" and np.isfinite(raw.action_range()).all():
            continue
        if name != "actions" and all_finite_fast(array):
            continue
        rows = ~np.isfinite(array).reshape(len(array), -1).all(axis=1)
        if rows.any():
            counts[name] = int(rows.sum())
            bad = rows if bad is None else bad | rows
    return bad, counts


def all_finite_fast(array: np.ndarray) -> bool:
    """True guarantees no NaN/inf; False means "maybe" (overflow), to be confirmed exactly.

    torch's vectorised float32 sum reads memory about twice as fast as numpy's pairwise sum,
    which matters on million-row arrays.
    """
    if array.dtype != np.float32 or not array.flags.c_contiguous:
        return bool(np.isfinite(array.sum()))
    return bool(torch.isfinite(torch.from_numpy(array).sum()))


def handle_nonfinite(raw: RawTransitions, policy: str) -> RawTransitions:
    """`fail`: raise naming the first bad key; `drop`: remove the rows, record and warn."""
    if policy not in NONFINITE_POLICIES:
        raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {policy!r}")
    bad, counts = nonfinite_rows(raw)
    raw.metadata["n_dropped"] = 0
    if bad is None:
        return raw
    if policy == "fail":
        name = next(iter(counts))
        first_row = int(np.flatnonzero(~np.isfinite(getattr(raw, name)).reshape(len(raw), -1).all(axis=1))[0])
        raise DatasetError(
            raw.path,
            raw.key_of(name, first_row),
            f"{counts[name]} transition(s) with NaN/inf values (first at transition {first_row}); "
            "pass nonfinite='drop' to discard them",
        )
    n_bad = int(bad.sum())
    detail = ", ".join(f"{raw.key_of(name)}: {count}" for name, count in counts.items())
    warnings.warn(f"{raw.path}: dropped {n_bad} transition(s) with NaN/inf values ({detail})", stacklevel=3)
    dropped = raw.drop_rows(bad)
    dropped.metadata["n_dropped"] = n_bad
    dropped.metadata["nonfinite_counts"] = counts  # per field; a row can count in several
    if len(dropped) == 0:
        raise DatasetError(raw.path, None, "zero transitions left after dropping non-finite values")
    return dropped


def check_not_empty(raw: RawTransitions) -> None:
    if len(raw) == 0:
        raise DatasetError(raw.path, raw.key_of("rewards"), "contains zero transitions")


def space_mismatches(
    raw: RawTransitions, observation_space: gym.Space | None, action_space: gym.Space | None
) -> list[DatasetError]:
    """One error per array whose width disagrees with the given space (as stored, flattened)."""
    problems = []
    checks = (("observations", observation_space, raw.metadata.get("obs_keys")), ("actions", action_space, None))
    for name, space, keys in checks:
        if space is None:
            continue
        try:
            expected = stored_dim(space, keys)
        except KeyError as err:
            problems.append(DatasetError(raw.path, raw.key_of(name), f"key {err} is not in the given space {space}"))
            continue
        actual = getattr(raw, name).shape[1]
        if expected != actual:
            problem = f"{name} have dimension {actual} but the given space {space} has {expected}"
            problems.append(DatasetError(raw.path, raw.key_of(name), problem))
    return problems


def stored_dim(space: gym.Space, keys: list[str] | None = None) -> int:
    """Width of one flattened row of `space` as datasets store it (discrete values are one column)."""
    if isinstance(space, gym.spaces.Dict):
        names = keys if keys is not None else list(space.spaces)
        return sum(stored_dim(_subspace(space, name)) for name in names)
    if isinstance(space, gym.spaces.Tuple):
        return sum(stored_dim(sub) for sub in space.spaces)
    if isinstance(space, gym.spaces.Discrete):
        return 1
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.asarray(space.nvec).size)
    if space.shape is not None:
        return math.prod(space.shape)
    return gym.spaces.flatdim(space)


def action_bounds(raw: RawTransitions, action_space: gym.Space | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high) per action dimension from the given Box space, else from the file's
    metadata (a scalar applies to every dimension), else None."""
    if isinstance(action_space, gym.spaces.Box):
        low, high = action_space.low, action_space.high
    elif "action_low" in raw.metadata and "action_high" in raw.metadata:
        low, high = raw.metadata["action_low"], raw.metadata["action_high"]
    else:
        return None
    return _per_dimension(low, raw.actions.shape[1]), _per_dimension(high, raw.actions.shape[1])


def _per_dimension(bound, act_dim: int) -> np.ndarray:
    bound = np.asarray(bound, dtype=np.float64).reshape(-1)
    return np.full(act_dim, bound[0]) if bound.size == 1 else bound


@dataclass(frozen=True)
class BoundViolations:
    n_transitions: int  # transitions with at least one action component out of bounds
    per_dimension: np.ndarray  # count of out-of-bound values per action dimension
    worst_excess: float  # largest distance outside the bounds


def bound_violations(raw: RawTransitions, low: np.ndarray, high: np.ndarray) -> BoundViolations | None:
    """None when every action lies in [low - tol, high + tol]; per-dimension extrema decide fast."""
    actions = raw.actions
    if low.shape[0] != actions.shape[1] or high.shape[0] != actions.shape[1]:
        raise ValueError(f"action bounds have {low.shape[0]} dimensions but actions have {actions.shape[1]}")
    lowest, highest = raw.action_range()
    if lowest >= low.max() - ACTION_BOUND_TOLERANCE and highest <= high.min() + ACTION_BOUND_TOLERANCE:
        return None  # inside even the tightest bound of every dimension (always so for uniform bounds)
    amin, amax = raw.action_extrema()
    if np.all(amin >= low - ACTION_BOUND_TOLERANCE) and np.all(amax <= high + ACTION_BOUND_TOLERANCE):
        return None
    outside = (actions < low - ACTION_BOUND_TOLERANCE) | (actions > high + ACTION_BOUND_TOLERANCE)
    excess = max(float(np.max(low - amin)), float(np.max(amax - high)))
    return BoundViolations(int(outside.any(axis=1).sum()), outside.sum(axis=0), excess)


def check_action_bounds(raw: RawTransitions, bounds: tuple[np.ndarray, np.ndarray]) -> None:
    low, high = bounds
    try:
        violations = bound_violations(raw, low, high)
    except ValueError as err:
        raise DatasetError(raw.path, raw.key_of("actions"), str(err)) from None
    if violations is not None:
        raise DatasetError(
            raw.path,
            raw.key_of("actions"),
            f"{violations.n_transitions} action(s) outside the declared bounds [{low.tolist()}, {high.tolist()}] "
            f"(by up to {violations.worst_excess:.3g}; per dimension: {violations.per_dimension.tolist()}); "
            "pass check_action_bounds=False to load anyway",
        )


def _subspace(space: gym.spaces.Dict, name: str) -> gym.Space:
    for part in name.split("/"):
        space = space.spaces[part]
    return space
