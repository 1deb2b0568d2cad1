"""`inspect_dataset`: a readable report on a dataset file that lists problems instead of raising."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from robo_offline.data.dataset import TransitionDataset
from robo_offline.data.raw import RawTransitions
from robo_offline.data.readers import read_raw
from robo_offline.data.validation import action_bounds, bound_violations, nonfinite_rows, space_mismatches

_MAX_DIMS_SHOWN = 24


@dataclass
class InspectReport:
    """What `inspect_dataset` found; `str(report)` is a multi-line summary for terminals and logs."""

    path: str
    format: str
    env_id: str | None
    n_transitions: int  # usable transitions (after leaving out non-finite ones)
    n_episodes: int
    n_terminals: int
    n_timeouts: int  # episode ends that are not terminal (time limits, gaps, end of data)
    return_mean: float
    return_std: float
    return_min: float
    return_max: float
    success_rate: float | None  # over episodes that record success; None when none do
    obs_min: np.ndarray
    obs_max: np.ndarray
    action_min: np.ndarray
    action_max: np.ndarray
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    obs_keys: list[str] | None = None
    nonfinite_counts: dict[str, int] = field(default_factory=dict)  # file key -> transitions affected
    n_out_of_bounds: int = 0  # transitions with an action outside the declared bounds
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth knowing that are not errors

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"Dataset {self.path}",
            f"  format        {self.format}" + (f"  (obs keys: {', '.join(self.obs_keys)})" if self.obs_keys else ""),
            f"  env id        {self.env_id or 'unknown'}",
            f"  transitions   {self.n_transitions:,} in {self.n_episodes:,} episodes "
            f"({self.n_terminals:,} terminal, {self.n_timeouts:,} cut without terminal)",
            f"  returns       mean {self.return_mean:.4g} ± {self.return_std:.4g}, "
            f"min {self.return_min:.4g}, max {self.return_max:.4g} (undiscounted, per episode)",
            "  success rate  " + ("not recorded" if self.success_rate is None else f"{self.success_rate:.1%}"),
            f"  observations  {len(self.obs_min)} dims",
            *_ranges(self.obs_min, self.obs_max),
            f"  actions       {len(self.action_min)} dims"
            + ("" if self.action_low is None else "  (declared bounds shown as [low, high])"),
            *_ranges(self.action_min, self.action_max, self.action_low, self.action_high),
        ]
        lines += [f"  note: {note}" for note in self.notes]
        lines.append("  problems      none" if self.ok else f"  problems      {len(self.problems)}")
        lines += [f"    - {problem}" for problem in self.problems]
        return "\n".join(lines)


def inspect_dataset(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    obs_keys: list[str] | None = None,
    gamma: float = 0.99,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    **ignored,
) -> InspectReport:
    """Summarise a dataset and list its problems (non-finite values, out-of-bound actions,
    dimension mismatches) rather than raising on them.

    Takes `load_dataset`'s keyword arguments; those that only steer failure handling
    (`nonfinite`, `check_action_bounds`, `device`) are ignored. A file that cannot be read
    at all (missing, not HDF5, missing keys) still raises a `DatasetError`.
    """
    unknown = set(ignored) - {"nonfinite", "check_action_bounds", "device"}
    if unknown:
        raise TypeError(f"inspect_dataset got unexpected keyword arguments {sorted(unknown)}")
    raw = read_raw(path, format, obs_keys)
    problems = [str(err) for err in space_mismatches(raw, observation_space, action_space)]
    raw, nonfinite_counts = _set_aside_nonfinite(raw, problems)
    bounds, n_out_of_bounds = _check_bounds(raw, action_space, problems)
    notes = []
    if raw.metadata.get("n_dropped_episode_ends"):
        notes.append(
            f"{raw.metadata['n_dropped_episode_ends']:,} final non-terminal step(s) have no next observation "
            "in the file and are left out (D4RL qlearning_dataset convention)"
        )
    if len(raw) == 0:
        problems.append("no usable transitions")
        return _empty_report(path, raw, problems, notes)
    dataset = TransitionDataset.from_raw(raw, gamma)
    returns = dataset.episode_returns().double().numpy()
    success = [flag for flag in raw.metadata.get("episode_success") or [] if flag is not None]
    obs_min, obs_max = raw.observations.min(axis=0), raw.observations.max(axis=0)
    return InspectReport(
        path=str(path),
        format=raw.format,
        env_id=raw.metadata.get("env_id"),
        n_transitions=dataset.n_transitions,
        n_episodes=dataset.n_episodes,
        n_terminals=int(raw.terminals.sum()),
        n_timeouts=int(dataset.timeouts.sum()),
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        return_min=float(returns.min()),
        return_max=float(returns.max()),
        success_rate=float(np.mean(success)) if success else None,
        obs_min=obs_min,
        obs_max=obs_max,
        action_min=raw.action_extrema()[0],
        action_max=raw.action_extrema()[1],
        action_low=None if bounds is None else bounds[0],
        action_high=None if bounds is None else bounds[1],
        obs_keys=raw.metadata.get("obs_keys"),
        nonfinite_counts=nonfinite_counts,
        n_out_of_bounds=n_out_of_bounds,
        problems=problems,
        notes=notes,
    )


def _set_aside_nonfinite(raw: RawTransitions, problems: list[str]) -> tuple[RawTransitions, dict[str, int]]:
    """Drop rows with NaN/inf (so statistics stay meaningful) and report them per file key."""
    bad_rows, counts = nonfinite_rows(raw)
    per_key: dict[str, int] = {}
    for name, count in counts.items():  # derived next observations share their file key
        per_key[raw.key_of(name)] = per_key.get(raw.key_of(name), 0) + count
    problems += [f"{count:,} transition(s) with NaN/inf in {key!r}" for key, count in per_key.items()]
    return (raw if bad_rows is None else raw.drop_rows(bad_rows)), per_key


def _check_bounds(
    raw: RawTransitions, action_space: gym.Space | None, problems: list[str]
) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
    """The declared action bounds (None if unknown or unusable) and how many transitions break them."""
    bounds = action_bounds(raw, action_space)
    if bounds is None or len(raw) == 0:
        return bounds, 0
    try:
        violations = bound_violations(raw, *bounds)
    except ValueError as err:
        problems.append(str(err))
        return None, 0
    if violations is None:
        return bounds, 0
    problems.append(
        f"{violations.n_transitions:,} transition(s) with actions outside the declared bounds "
        f"(by up to {violations.worst_excess:.3g}; per dimension: {violations.per_dimension.tolist()})"
    )
    return bounds, violations.n_transitions


def _empty_report(path, raw, problems: list[str], notes: list[str]) -> InspectReport:
    nothing = np.zeros(0, dtype=np.float32)
    nan = float("nan")
    return InspectReport(
        path=str(path), format=raw.format, env_id=raw.metadata.get("env_id"),
        n_transitions=0, n_episodes=0, n_terminals=0, n_timeouts=0,
        return_mean=nan, return_std=nan, return_min=nan, return_max=nan, success_rate=None,
        obs_min=nothing, obs_max=nothing, action_min=nothing, action_max=nothing,
        problems=problems, notes=notes,
    )  # fmt: skip


def _ranges(low: np.ndarray, high: np.ndarray, bound_low=None, bound_high=None) -> list[str]:
    lines = []
    for dim in range(min(len(low), _MAX_DIMS_SHOWN)):
        line = f"    [{dim:>3}] min {low[dim]:>10.4g}   max {high[dim]:>10.4g}"
        if bound_low is not None:
            line += f"   bounds [{bound_low[dim]:.4g}, {bound_high[dim]:.4g}]"
        lines.append(line)
    if len(low) > _MAX_DIMS_SHOWN:
        lines.append(f"    ... {len(low) - _MAX_DIMS_SHOWN} more dims")
    return lines
