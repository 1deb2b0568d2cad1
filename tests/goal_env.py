"""A goal-conditioned test task with gymnasium's Dict observation (`observation / achieved_goal / desired_goal`),
registered as `GOAL_ID`: a point on a plane driven by velocity commands towards a random goal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

GOAL_ID = "robo_offline_test/PointGoal-v0"
STEPS = 20
SPEED = 0.1  # position change per step at full command


class PointGoalEnv(gym.Env):
    def __init__(self) -> None:
        box = lambda n, bound: gym.spaces.Box(-bound, bound, (n,), np.float64)  # noqa: E731
        self.observation_space = gym.spaces.Dict(
            {"observation": box(4, np.inf), "achieved_goal": box(2, 2.0), "desired_goal": box(2, 2.0)}
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "observation": np.concatenate([self.pos, self.vel]),
            "achieved_goal": self.pos.copy(),
            "desired_goal": self.goal.copy(),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos, self.goal = self.np_random.uniform(-0.5, 0.5, 2), self.np_random.uniform(-0.5, 0.5, 2)
        self.vel = np.zeros(2)
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict[str, Any]]:
        self.vel = SPEED * np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.pos = self.pos + self.vel
        return self._obs(), -float(np.linalg.norm(self.pos - self.goal)), False, False, {}


def goal_successes(obs: np.ndarray) -> np.ndarray:
    """Success on the flat observation in sorted key order: achieved_goal [0:2] within 0.05 of desired_goal [2:4]."""
    obs = np.asarray(obs)
    return np.linalg.norm(obs[..., 0:2] - obs[..., 2:4], axis=-1) < 0.05


def record_dict_log(path: Path, episodes: int = 10, seed: int = 0) -> Path:
    """A Minari log of random actions in the raw (Dict-observation) env, as a user's logger would store it."""
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    env, rng = gym.make(GOAL_ID), np.random.default_rng(seed)
    (path / "data").mkdir(parents=True)
    storage = MinariStorage.new(path / "data", observation_space=env.observation_space, action_space=env.action_space)
    storage.update_metadata({"dataset_id": "robo-offline/point-goal-v0", "minari_version": "0.5.4"})
    buffers = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards = [obs], [], []
        for _ in range(STEPS):
            action = rng.uniform(-1, 1, 2).astype(np.float32)
            obs, reward, *_ = env.step(action)
            observations.append(obs), actions.append(action), rewards.append(reward)
        stacked = {k: np.stack([o[k] for o in observations]) for k in env.observation_space.spaces}
        truncations = np.zeros(STEPS, bool)
        truncations[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=stacked,
                actions=np.stack(actions),
                rewards=np.array(rewards),
                terminations=np.zeros(STEPS, bool),
                truncations=truncations,
            )
        )
    storage.update_episodes(buffers)
    return path


class GreedyDemonstrator:
    """Full speed towards the goal, read from the flat observation in sorted key order (a task config's
    `task.demos.demonstrator`)."""

    def __init__(self, env: gym.Env, quality: str | float = "expert", seed: int | None = None) -> None:
        self.quality = quality

    def reset(self, seed: int | None = None) -> None:
        pass

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs[2:4] - obs[0:2]) / SPEED, -1.0, 1.0).astype(np.float32)


if GOAL_ID not in gym.registry:
    gym.register(GOAL_ID, entry_point=f"{__name__}:PointGoalEnv", max_episode_steps=STEPS)
