"""Run a behaviour in one environment and record `Episode`s (the contract with the demo-log writer).

Acting runs single-threaded (`sim.threads`): one observation at a time is a chain of tiny ops.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from sim.behaviours import Behaviour
from sim.episode import Episode
from sim.threads import torch_threads

EXECUTED_ACTION_KEY = "executed_action"  # set by sim.wrappers.SafetyFilterWrapper
SUCCESS_KEY = "is_success"  # set by the task wrappers in sim.tasks


def rollout_episodes(
    env: gym.Env, behaviour: Behaviour, n_episodes: int, seed: int, progress: bool = True, desc: str = "rollout"
) -> list[Episode]:
    """Episodes k = 0..n-1, each reset with `seed + k` (env and behaviour), run until it ends."""
    with torch_threads(1):
        return [
            rollout_episode(env, behaviour, seed + k)
            for k in tqdm(range(n_episodes), desc=desc, unit="ep", disable=not progress)
        ]


def rollout_transitions(
    env: gym.Env, behaviour: Behaviour, n_transitions: int, seed: int, progress: bool = True, desc: str = "rollout"
) -> list[Episode]:
    """Whole episodes (seeded `seed + k` as above) until they hold at least `n_transitions` steps.

    Locomotion logs are sized in transitions (D4RL: 1M per tier), and episode lengths vary with
    the behaviour's quality; the last episode is kept whole, so no episode is cut.
    """
    episodes, total = [], 0
    with torch_threads(1), tqdm(total=n_transitions, desc=desc, unit="step", disable=not progress) as bar:
        while total < n_transitions:
            episodes.append(rollout_episode(env, behaviour, seed + len(episodes)))
            total += episodes[-1].length
            bar.update(min(episodes[-1].length, n_transitions - bar.n))
    return episodes


def rollout_episode(env: gym.Env, behaviour: Behaviour, seed: int | None = None) -> Episode:
    """One episode; actions recorded are those executed (after a safety filter, clipped to the space)."""
    obs, info = env.reset(seed=seed)
    behaviour.reset(seed)
    observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
    done = False
    while not done:
        action = behaviour(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(executed_action(action, info, env.action_space))
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
    success = info.get(SUCCESS_KEY)
    return Episode(
        observations=np.asarray(observations, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminations=np.asarray(terminations, dtype=bool),
        truncations=np.asarray(truncations, dtype=bool),
        success=None if success is None else bool(success),
    )


def executed_action(action: Any, info: dict[str, Any], space: gym.Space) -> np.ndarray:
    """What the simulator received: the safety filter's output if reported, else the action within bounds."""
    if EXECUTED_ACTION_KEY in info:
        return np.asarray(info[EXECUTED_ACTION_KEY], dtype=np.float32)
    action = np.asarray(action, dtype=np.float32)
    if isinstance(space, gym.spaces.Box):
        action = np.clip(action, space.low, space.high)
    return action
