"""Online replay: a ring buffer of whole episodes, and the offline/online batch mixer.

Online transitions enter the buffer only when their episode ends, because only then is the
discounted Monte-Carlo return-to-go known (the official Cal-QL semantics: V_ref stays defined
online; CORL's port zeroes it instead). Rows are stored already transformed (normalised
observations, actions in [-1, 1], scaled rewards), exactly like the offline dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robo_offline.data.dataset import Batch, TransitionDataset
from robo_offline.data.returns import compute_mc_returns

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "mc_returns")


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions on the training device; FIFO over episodes."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, gamma: float, device: torch.device | str = "cpu"):
        self.capacity, self.gamma, self.device = capacity, gamma, torch.device(device)
        shapes = {"observations": (obs_dim,), "actions": (act_dim,), "next_observations": (obs_dim,)}
        self.tensors = {k: torch.zeros((capacity, *shapes.get(k, ())), device=self.device) for k in FIELDS}
        self.size = 0
        self.ptr = 0
        self.episodes = 0

    def add_episode(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, terminals: np.ndarray
    ) -> np.ndarray:
        """Append one finished episode (T rows each); returns its MC return-to-go (T,)."""
        t = len(rewards)
        # The sum stops at the last row (termination or timeout alike): compute_mc_returns ends it there.
        mc = compute_mc_returns(rewards, terminals, np.zeros(t, dtype=bool), self.gamma)
        rows = {
            "observations": obs,
            "actions": actions,
            "rewards": rewards,
            "next_observations": next_obs,
            "terminals": terminals,
            "mc_returns": mc,
        }
        idx = (self.ptr + torch.arange(t)) % self.capacity
        idx = idx.to(self.device)
        for k, v in rows.items():
            self.tensors[k][idx] = torch.as_tensor(np.asarray(v, dtype=np.float32), device=self.device)
        self.ptr = (self.ptr + t) % self.capacity
        self.size = min(self.size + t, self.capacity)
        self.episodes += 1
        return mc

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        i = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return Batch(*(self.tensors[k][i] for k in FIELDS))

    def state_dict(self) -> dict[str, Any]:
        return {
            "tensors": {k: v[: self.size].cpu() for k, v in self.tensors.items()},
            "size": self.size,
            "ptr": self.ptr,
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["tensors"].items():
            self.tensors[k][: len(v)] = v.to(self.device)
        self.size, self.ptr, self.episodes = state["size"], state["ptr"], state["episodes"]


class MixedSampler:
    """Batches with a fixed share of online rows (default 50/50), all offline until online data exists."""

    def __init__(
        self,
        offline: TransitionDataset,
        online: ReplayBuffer,
        batch_size: int,
        online_fraction: float,
        generator: torch.Generator | None = None,
    ):
        if not 0.0 <= online_fraction <= 1.0:
            raise ValueError(f"online_fraction must be in [0, 1], got {online_fraction}")
        self.offline, self.online, self.generator = offline, online, generator
        self.batch_size = batch_size
        self.n_online = int(round(batch_size * online_fraction))

    def __call__(self) -> Batch:
        if self.online.size == 0 or self.n_online == 0:
            return self.offline.sample(self.batch_size, self.generator)
        if self.n_online == self.batch_size:
            return self.online.sample(self.batch_size, self.generator)
        off = self.offline.sample(self.batch_size - self.n_online, self.generator)
        on = self.online.sample(self.n_online, self.generator)
        return Batch(*(torch.cat([a, b]) for a, b in zip(off, on)))
