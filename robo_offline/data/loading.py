"""`load_dataset`: read, validate and tensorise a logged dataset in one call."""

from __future__ import annotations

import os

import gymnasium as gym
import torch

from robo_offline.data.dataset import TransitionDataset
from robo_offline.data.raw import RawTransitions
from robo_offline.data.readers import read_raw
from robo_offline.data.validation import (
    action_bounds,
    check_action_bounds,
    check_not_empty,
    handle_nonfinite,
    space_mismatches,
)


def load_dataset(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    obs_keys: list[str] | None = None,
    gamma: float = 0.99,
    nonfinite: str = "fail",
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    check_action_bounds: bool = True,
    device: str | torch.device = "cpu",
) -> TransitionDataset:
    """Load a D4RL-layout, Minari or robomimic dataset into a `TransitionDataset` on `device`.

    `format` is "auto" (detected from the file's structure) or one of "d4rl", "minari",
    "robomimic". `obs_keys` picks and orders dict observation keys (Minari, robomimic).
    `nonfinite="drop"` removes transitions holding NaN/inf (recorded in metadata["n_dropped"])
    instead of failing. Observation and action widths are checked against the given spaces;
    actions against the bounds of `action_space`, or of the file's own metadata, to 1e-6.
    Every problem with the file raises a `DatasetError` naming the file and the key.
    """
    raw = read_raw(path, format, obs_keys)
    return validated_dataset(
        raw,
        gamma=gamma,
        nonfinite=nonfinite,
        observation_space=observation_space,
        action_space=action_space,
        check_bounds=check_action_bounds,
        device=device,
    )


def validated_dataset(
    raw: RawTransitions,
    *,
    gamma: float,
    nonfinite: str,
    observation_space: gym.Space | None,
    action_space: gym.Space | None,
    check_bounds: bool,
    device: str | torch.device,
) -> TransitionDataset:
    """Validate raw arrays (raising on the first problem), then convert them to tensors."""
    check_not_empty(raw)
    mismatches = space_mismatches(raw, observation_space, action_space)
    if mismatches:
        raise mismatches[0]
    raw = handle_nonfinite(raw, nonfinite)
    bounds = action_bounds(raw, action_space)
    if bounds is not None:
        raw.metadata["action_low"], raw.metadata["action_high"] = bounds
        if check_bounds:
            check_action_bounds(raw, bounds)
    return TransitionDataset.from_raw(raw, gamma, device)
