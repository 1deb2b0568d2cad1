"""Behaviours: single-observation controllers that roll out episodes (random, scripted, exported policy)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

BEHAVIOURS = ("random", "scripted", "policy")


@runtime_checkable
class Behaviour(Protocol):
    """obs -> action for one environment; `reset(seed)` at each episode start (seeds any randomness)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, seed: int | None = None) -> None: ...


class RandomBehaviour:
    """Uniform samples from the action space, reproducible per episode seed (the env's own space is untouched)."""

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = copy.deepcopy(action_space)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.action_space.sample())

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.action_space.seed(seed)


class PolicyBehaviour:
    """Any callable obs -> action; its own `reset()` (e.g. an exported policy's filter state) runs per episode."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.fn = fn

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(obs))

    def reset(self, seed: int | None = None) -> None:
        reset = getattr(self.fn, "reset", None)
        if callable(reset):
            reset()


class NoisyBehaviour:
    """Gaussian exploration noise on another behaviour's actions, `std` in half-ranges of the action space.

    Stands in for a stochastic training policy when re-recording data from deterministic exported
    snapshots (e.g. a D4RL-style medium-replay tier); seeded per episode, clipped to the bounds.
    """

    def __init__(self, inner: Behaviour, action_space: gym.spaces.Box, std: float) -> None:
        self.inner, self.std = inner, float(std)
        self.low, self.high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
        self.rng = np.random.default_rng()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(self.inner(obs), dtype=np.float32)
        noise = self.rng.standard_normal(action.shape).astype(np.float32) * self.std * (self.high - self.low) / 2
        return np.clip(action + noise, self.low, self.high)

    def reset(self, seed: int | None = None) -> None:
        self.inner.reset(seed)
        self.rng = np.random.default_rng(seed)


def make_behaviour(
    name: str,
    env: gym.Env,
    quality: float | str = "expert",
    seed: int | None = None,
    policy_path: str | Path | None = None,
    action_noise: float = 0.0,
) -> Behaviour:
    """ "random", "scripted" (the env's demonstrator at `quality`) or "policy" (an exported `.pt`/`.pt2`),
    with Gaussian `action_noise` (half-ranges) on top when it is > 0."""
    behaviour = _base_behaviour(name, env, quality, seed, policy_path)
    if action_noise < 0:
        raise ValueError(f"action_noise must be >= 0, got {action_noise}")
    return NoisyBehaviour(behaviour, env.action_space, action_noise) if action_noise > 0 else behaviour


def _base_behaviour(
    name: str, env: gym.Env, quality: float | str, seed: int | None, policy_path: str | Path | None
) -> Behaviour:
    if name == "random":
        behaviour = RandomBehaviour(env.action_space)
        behaviour.reset(seed)
        return behaviour
    if name == "scripted":
        from sim.demonstrators import make_demonstrator

        return make_demonstrator(env, quality=quality, seed=seed)
    if name == "policy":
        if policy_path is None:
            raise ValueError("behaviour 'policy' needs policy_path (an exported .pt or .pt2 file)")
        from deploy import load_policy

        return PolicyBehaviour(load_policy(policy_path))
    raise ValueError(f"unknown behaviour {name!r}; use one of {BEHAVIOURS}")
