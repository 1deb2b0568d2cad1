"""Online data collection on gymnasium vector environments, through the safety filter.

Each sub-environment carries a `SafetyFilterWrapper`, so the action that reaches the simulator
is the filtered one; the collector stores that *executed* action (from the step's info), not the
policy's raw output. Transitions wait per sub-environment until their episode ends, then enter
the replay buffer with their Monte-Carlo return-to-go. The collector's state includes the
episodes in progress, so a resumed run continues them exactly (MuJoCo environments).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from deploy.units import EnvUnits
from robo_offline.data.replay import ReplayBuffer
from sim.env_state import get_env_state, set_env_state, supports_state


@dataclass
class _Pending:
    obs: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    next_obs: list = field(default_factory=list)
    terminals: list = field(default_factory=list)
    raw_return: float = 0.0
    interventions: dict[str, int] = field(default_factory=dict)


class OnlineCollector:
    """Steps a vector env with an exploration policy and files finished episodes into a buffer.

    `explore(obs_unit (n, obs_dim) tensor) -> action in [-1, 1] (n, act_dim) tensor`.
    The vector env must use gymnasium's SAME_STEP autoreset, so a finished sub-env's final
    observation and final info arrive in the same step as its reset observation.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        buffer: ReplayBuffer,
        units: EnvUnits,
        explore: Callable[[Tensor], Tensor],
        device: torch.device,
        seed: int,
    ):
        self.envs, self.buffer, self.explore, self.device = envs, buffer, explore, device
        self.units = units.numpy
        self.n = envs.num_envs
        self.env_steps = 0
        self.episode_returns: list[float] = []  # raw (env-unit) returns of finished episodes
        self.episode_successes: list[float] = []
        self.interventions: dict[str, int] = {}
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start fresh episodes, each sub-env seeded from `seed`."""
        obs, _ = self.envs.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.pending = [_Pending() for _ in range(self.n)]

    @torch.no_grad()
    def step(self) -> None:
        obs_unit = self.units.obs(self.obs)
        action = self.explore(torch.as_tensor(obs_unit, device=self.device)).cpu().numpy()
        next_obs, reward, terminated, truncated, info = self.envs.step(self.units.action_to_env(action))
        done = terminated | truncated
        final_info = info.get("final_info", {})
        last = np.array(next_obs, dtype=np.float32)  # a finished sub-env's row: its final observation
        for i in np.flatnonzero(done):
            last[i] = info["final_obs"][i]
        executed_unit = self.units.action_to_unit(_executed_actions(info, done, action.shape))
        last_unit = self.units.obs(last)
        for i in range(self.n):
            p = self.pending[i]
            p.obs.append(obs_unit[i])
            p.actions.append(executed_unit[i])
            p.rewards.append(float(reward[i]))
            p.next_obs.append(last_unit[i])
            p.terminals.append(float(terminated[i]))
            p.raw_return += float(reward[i])
            if done[i]:
                self._finish(i, final_info)
        self.obs = np.asarray(next_obs, dtype=np.float32)
        self.env_steps += self.n

    def _finish(self, i: int, final_info: dict[str, Any]) -> None:
        p = self.pending[i]
        self.buffer.add_episode(
            np.stack(p.obs),
            np.stack(p.actions),
            self.units.reward(np.array(p.rewards)),
            np.stack(p.next_obs),
            np.array(p.terminals, dtype=np.float32),
        )
        self.episode_returns.append(p.raw_return)
        success = _item(final_info, "is_success", i)
        if success is not None:
            self.episode_successes.append(float(success))
        counts = _item(final_info, "safety_interventions", i) or {}
        for k, v in counts.items():
            self.interventions[k] = self.interventions.get(k, 0) + int(v)
        self.pending[i] = _Pending()

    def stats(self, last: int = 10) -> dict[str, float]:
        out: dict[str, float] = {"env_steps": self.env_steps, "online_episodes": len(self.episode_returns)}
        if self.episode_returns:
            out["online_return"] = float(np.mean(self.episode_returns[-last:]))
        if self.episode_successes:
            out["online_success"] = float(np.mean(self.episode_successes[-last:]))
        out.update({f"interventions_{k}": v for k, v in self.interventions.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        """Counters plus, for MuJoCo envs, the episodes in progress (simulator, RNG, wrappers, pending rows)."""
        state = {
            "env_steps": self.env_steps,
            "episode_returns": self.episode_returns,
            "episode_successes": self.episode_successes,
            "interventions": self.interventions,
        }
        envs = getattr(self.envs, "envs", None)  # sub-envs of a SyncVectorEnv
        if envs is not None and all(supports_state(e) for e in envs):
            state["episodes"] = {
                "obs": self.obs.copy(),
                "pending": [copy.deepcopy(vars(p)) for p in self.pending],
                "envs": [get_env_state(e) for e in envs],
            }
        return state

    def load_state_dict(self, state: dict[str, Any], seed: int) -> None:
        """Continue the checkpointed episodes exactly; without them, start fresh ones seeded `seed`."""
        self.env_steps = state["env_steps"]
        self.episode_returns = list(state["episode_returns"])
        self.episode_successes = list(state["episode_successes"])
        self.interventions = dict(state["interventions"])
        self.reset(seed)
        episodes = state.get("episodes")
        if episodes is not None:
            for env, env_state in zip(self.envs.envs, episodes["envs"]):
                set_env_state(env, env_state)
            self.obs = np.asarray(episodes["obs"], dtype=np.float32)
            self.pending = [_Pending(**copy.deepcopy(p)) for p in episodes["pending"]]


def _executed_actions(info: dict[str, Any], done: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The filtered actions the simulator received; a finished sub-env reports it in final_info."""
    executed = (
        np.array(info["executed_action"], dtype=np.float32, copy=True)
        if "executed_action" in info
        else np.zeros(shape, np.float32)
    )
    final = info.get("final_info", {})
    if done.any() and "executed_action" in final:
        executed[done] = np.asarray(final["executed_action"], dtype=np.float32)[done]
    if "executed_action" not in info and not done.all():
        raise KeyError(
            "vector env info has no 'executed_action': wrap each sub-env in sim.wrappers.SafetyFilterWrapper"
        )
    return executed


def _item(info: dict[str, Any], key: str, i: int) -> Any:
    """Entry i of a vector env's merged info (arrays of values, or dicts of arrays), None if absent."""
    if key not in info:
        return None
    mask = info.get(f"_{key}")
    if mask is not None and not np.asarray(mask)[i]:
        return None
    value = info[key]
    if isinstance(value, dict):
        return {k: np.asarray(v)[i] for k, v in value.items() if not k.startswith("_")}
    return np.asarray(value)[i]
