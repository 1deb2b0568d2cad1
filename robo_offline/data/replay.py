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
from robo_offline.data.returns import lower_bound_returns

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "mc_returns")


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions on the training device; FIFO over episodes."""

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        gamma: float,
        device: torch.device | str = "cpu",
        reward_floor: float | None = None,
    ):
        """`reward_floor` (training units) bounds every reward: cut episodes' MC returns get its tail."""
        self.capacity, self.gamma, self.device = capacity, gamma, torch.device(device)
        self.reward_floor = reward_floor
        shapes = {"observations": (obs_dim,), "actions": (act_dim,), "next_observations": (obs_dim,)}
        self.tensors = {k: torch.zeros((capacity, *shapes.get(k, ())), device=self.device) for k in FIELDS}
        self.size = 0
        self.ptr = 0
        self.episodes = 0

    def add_episode(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, terminals: np.ndarray
    ) -> np.ndarray:
        """Append one finished episode (T rows each); returns its reference return-to-go (T,).

        The episode ends at its last row: a termination if that row is terminal, else a time limit,
        after which `lower_bound_returns` continues it at the reward floor.
        """
        t = len(rewards)
        cut = np.zeros(t, dtype=bool)
        cut[-1] = True
        mc, _ = lower_bound_returns(rewards, np.asarray(terminals) > 0, cut, self.gamma, self.reward_floor)
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


PROPORTIONAL = "proportional"  # online_fraction: uniform over offline and online rows together


class MixedSampler:
    """Batches with a fixed share of online rows (default 50/50), all offline until online data exists.

    `online_fraction="proportional"` samples uniformly from the offline and online rows together
    (IQL's fine-tuning protocol: one buffer that the online rows join), so the online share is
    n_online / (n_offline + n_online) in expectation.
    """

    def __init__(
        self,
        offline: TransitionDataset,
        online: ReplayBuffer,
        batch_size: int,
        online_fraction: float | str,
        generator: torch.Generator | None = None,
    ):
        proportional = online_fraction == PROPORTIONAL
        if not proportional and not 0.0 <= float(online_fraction) <= 1.0:
            raise ValueError(f"online_fraction must be in [0, 1] or {PROPORTIONAL!r}, got {online_fraction!r}")
        self.offline, self.online, self.generator = offline, online, generator
        self.batch_size = batch_size
        self.proportional = proportional
        self.n_online = 0 if proportional else int(round(batch_size * float(online_fraction)))

    def __call__(self) -> Batch:
        if self.online.size == 0 or (self.n_online == 0 and not self.proportional):
            return self.offline.sample(self.batch_size, self.generator)
        if self.proportional:
            return self._uniform_over_both()
        if self.n_online == self.batch_size:
            return self.online.sample(self.batch_size, self.generator)
        off = self.offline.sample(self.batch_size - self.n_online, self.generator)
        on = self.online.sample(self.n_online, self.generator)
        return Batch(*(torch.cat([a, b]) for a, b in zip(off, on)))

    def _uniform_over_both(self) -> Batch:
        n_off = self.offline.n_transitions
        device = self.offline.device
        i = torch.randint(0, n_off + self.online.size, (self.batch_size,), device=device, generator=self.generator)
        from_offline = (i < n_off).unsqueeze(1)
        off = self.offline.gather(i.clamp(max=n_off - 1))
        on_index = (i - n_off).clamp(min=0).to(self.online.device)
        on = Batch(*(self.online.tensors[k][on_index] for k in FIELDS))
        rows = (
            torch.where(from_offline, a.view(len(i), -1), b.view(len(i), -1)).view(a.shape) for a, b in zip(off, on)
        )
        return Batch(*rows)
