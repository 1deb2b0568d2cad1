"""`TransitionDataset`: a logged dataset as flat torch tensors, sampled on the training device."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

from deploy.units import EnvUnits
from robo_offline.data.errors import DatasetError
from robo_offline.data.hdf5_io import as_bool
from robo_offline.data.raw import RawTransitions, concat_episodes
from robo_offline.data.returns import compute_mc_returns, lower_bound_returns
from robo_offline.data.validation import handle_nonfinite

if TYPE_CHECKING:
    from sim.episode import Episode

EPISODES_SOURCE = "<episodes>"
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (obs, action, next_obs) -> rewards


class Batch(NamedTuple):
    """One sampled minibatch; float32 tensors on the dataset's device, leading dim B."""

    observations: Tensor  # (B, obs_dim)
    actions: Tensor  # (B, act_dim)
    rewards: Tensor  # (B,)
    next_observations: Tensor  # (B, obs_dim)
    terminals: Tensor  # (B,) 1.0 where the episode terminated (no bootstrapping)
    mc_returns: Tensor  # (B,) discounted return-to-go, see `compute_mc_returns`


class TransitionDataset:
    """Transitions of a logged dataset, one row each, as contiguous tensors on one device.

    Episodes are contiguous row ranges; each ends at a terminal (`terminals` = 1) or a timeout
    (`timeouts` = 1: cut by a time limit, a gap in the log or the end of the data, so
    bootstrapping continues through it). `mc_returns` is the discounted return-to-go inside the
    episode (see `compute_mc_returns`), computed on first use when not given. Keeping everything
    in device tensors makes `sample` a handful of index_select calls with no host round trip.
    """

    def __init__(
        self,
        observations: Tensor,
        actions: Tensor,
        rewards: Tensor,
        next_observations: Tensor,
        terminals: Tensor,
        timeouts: Tensor,
        episode_ids: Tensor,
        mc_returns: Tensor | None = None,
        *,
        metadata: dict | None = None,
        gamma: float = 0.99,
        n_episodes: int | None = None,
    ) -> None:
        self.observations = observations.contiguous()
        self.actions = actions.contiguous()
        self.rewards = rewards.contiguous()
        self.next_observations = next_observations.contiguous()
        self.terminals = terminals.contiguous()
        self.timeouts = timeouts.contiguous()
        self.episode_ids = episode_ids.contiguous()
        self._mc_returns = None if mc_returns is None else mc_returns.contiguous()
        self.metadata = dict(metadata or {})
        self.gamma = float(gamma)
        self._n_episodes = n_episodes
        self._check_shapes()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_raw(
        cls, raw: RawTransitions, gamma: float = 0.99, device: str | torch.device = "cpu"
    ) -> TransitionDataset:
        """Tensors from validated numpy arrays, with episode ids; MC returns come on first use."""
        ends = raw.episode_ends()
        timeouts = ends & ~raw.terminals  # every end that is not terminal, incl. the end of data
        end_rows = np.flatnonzero(ends)
        episode_ids = np.repeat(np.arange(len(end_rows), dtype=np.int64), np.diff(end_rows, prepend=-1))
        metadata = {"source": raw.path, "format": raw.format, "n_dropped": 0, **raw.metadata}
        return cls(
            _to_tensor(raw.observations, device),
            _to_tensor(raw.actions, device),
            _to_tensor(raw.rewards, device),
            _to_tensor(raw.next_observations, device),
            _to_tensor(raw.terminals.astype(np.float32), device),
            _to_tensor(timeouts.astype(np.float32), device),
            _to_tensor(episode_ids, device),
            metadata=metadata,
            gamma=gamma,
            n_episodes=len(end_rows),
        )

    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[Episode],
        gamma: float = 0.99,
        metadata: dict | None = None,
        *,
        nonfinite: str = "fail",
        device: str | torch.device = "cpu",
    ) -> TransitionDataset:
        """Dataset of in-memory episodes (online buffers, tests), identical to writing and loading them."""
        if not episodes:
            raise DatasetError(EPISODES_SOURCE, None, "no episodes given")
        raw = concat_episodes(
            EPISODES_SOURCE,
            "episodes",
            [np.asarray(ep.observations, np.float32).reshape(len(ep.observations), -1) for ep in episodes],
            [np.asarray(ep.actions, np.float32).reshape(len(ep.actions), -1) for ep in episodes],
            [np.asarray(ep.rewards, np.float32).reshape(-1) for ep in episodes],
            [as_bool(np.asarray(ep.terminations)) for ep in episodes],
            [as_bool(np.asarray(ep.truncations)) for ep in episodes],
            metadata={"episode_success": [ep.success for ep in episodes], **(metadata or {})},
            segments=([f"episode_{i}" for i in range(len(episodes))], [ep.length for ep in episodes]),
        )
        if len(raw) == 0:
            raise DatasetError(EPISODES_SOURCE, None, "episodes contain zero transitions")
        return cls.from_raw(handle_nonfinite(raw, nonfinite), gamma, device)

    def to(self, device: str | torch.device) -> TransitionDataset:
        """The same data on `device` (self when it is already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return self._replace(**{name: None if t is None else t.to(device) for name, t in self._stored().items()})

    # ------------------------------------------------------------------ sizes

    @property
    def device(self) -> torch.device:
        return self.observations.device

    @property
    def mc_returns(self) -> Tensor:
        """(N,) discounted return-to-go (`compute_mc_returns`), computed once on first use: a load does not pay for
        it, and the training path replaces it (relabelled rewards, training units) before drawing a batch."""
        if self._mc_returns is None:
            self._mc_returns = self._mc_returns_of(self.rewards)
        return self._mc_returns

    @property
    def n_transitions(self) -> int:
        return self.observations.shape[0]

    @property
    def n_episodes(self) -> int:
        if self._n_episodes is None:  # one host sync, cached: episode ids are 0..E-1 in row order
            self._n_episodes = int(self.episode_ids[-1]) + 1 if self.n_transitions else 0
        return self._n_episodes

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def __len__(self) -> int:
        return self.n_transitions

    def __repr__(self) -> str:
        return (
            f"TransitionDataset({self.n_transitions} transitions, {self.n_episodes} episodes, "
            f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, device={self.device}, "
            f"source={self.metadata.get('source')!r})"
        )

    # ------------------------------------------------------------------ training-time access

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Uniform minibatch with replacement, drawn and gathered on the dataset's device.

        A `generator` must live on the same device as the dataset.
        """
        return self.gather(torch.randint(self.n_transitions, (batch_size,), device=self.device, generator=generator))

    def sample_seeds(self, batch_size: int, generators: Sequence[torch.Generator]) -> Batch:
        """One minibatch per seed of a seed batch, each drawn from its own generator exactly as `sample` draws
        it: fields lead with the seed dim, (S, B, ...)."""
        index = torch.stack(
            [torch.randint(self.n_transitions, (batch_size,), device=self.device, generator=g) for g in generators]
        )
        return self.gather(index)

    def gather(self, index: Tensor) -> Batch:
        """The rows at `index` (a device tensor of any shape) as a batch whose fields lead with that shape."""
        flat = index.reshape(-1)
        fields = (self.observations, self.actions, self.rewards, self.next_observations, self.terminals)
        rows = [f.index_select(0, flat) for f in (*fields, self.mc_returns)]
        return Batch(*(r.view(*index.shape, *r.shape[1:]) for r in rows))

    def observation_stats(self, eps: float = 1e-3) -> tuple[Tensor, Tensor]:
        """Per-dimension mean and std of observations (std floored at `eps` so constant dims stay finite)."""
        var, mean = torch.var_mean(self.observations.to(_accumulation_dtype(self.device)), dim=0, correction=0)
        return mean.float(), var.sqrt().clamp_min(eps).float()

    def episode_returns(self) -> Tensor:
        """Undiscounted return of every episode, shape (n_episodes,), float32."""
        dtype = _accumulation_dtype(self.device)
        totals = torch.zeros(self.n_episodes, dtype=dtype, device=self.device)
        return totals.index_add_(0, self.episode_ids, self.rewards.to(dtype)).float()

    def relabelled(self, reward: RewardFn, name: str) -> TransitionDataset:
        """Rewards recomputed as `reward(obs, action, next_obs)` (batched numpy), MC returns with them.

        The log on disk is untouched; `metadata["reward"]` records which reward the rows carry.
        """
        obs, act, nxt = (t.cpu().numpy() for t in (self.observations, self.actions, self.next_observations))
        rewards = np.asarray(reward(obs, act, nxt), dtype=np.float32).reshape(-1)
        if rewards.shape != (self.n_transitions,):
            raise ValueError(f"reward {name!r} gave {rewards.shape[0]} values for {self.n_transitions} transitions")
        rewards_t = torch.from_numpy(rewards).to(self.device)
        return self._replace(rewards=rewards_t, metadata={**self.metadata, "reward": name})

    def with_last_actions(self, initial: Tensor | np.ndarray) -> TransitionDataset:
        """Observations followed by the episode's previous executed action (`initial` on its first step).

        `next_observations` end with the row's own action, so a transition stays consistent with
        the online observation of `sim.wrappers.LastActionObservation`.
        """
        initial = torch.as_tensor(initial, dtype=torch.float32, device=self.device).reshape(1, self.act_dim)
        first = torch.ones(self.n_transitions, dtype=torch.bool, device=self.device)
        first[1:] = self.episode_ids[1:] != self.episode_ids[:-1]
        previous = torch.cat([initial, self.actions[:-1]])
        previous = torch.where(first.unsqueeze(1), initial, previous)
        metadata = {**self.metadata, "last_action_in_observation": True}
        return self._replace(
            observations=torch.cat([self.observations, previous], dim=1),
            next_observations=torch.cat([self.next_observations, self.actions], dim=1),
            metadata=metadata,
        )

    def transformed(self, units: EnvUnits, reward_floor: float | None = None) -> TransitionDataset:
        """A new dataset in training units: `units` applied to observations, actions and rewards.

        Observations and next observations are normalised, actions mapped to [-1, 1] (clamped,
        so values within the loader's 1e-6 bound tolerance stay inside) and rewards mapped
        affinely. `mc_returns` become the lower-bound return-to-go of the training rewards
        (`lower_bound_returns`: after a timeout every later reward at `reward_floor`, in env units;
        `metadata["mc_lower_bound"]` says whether a bound was known). The transform is appended
        to `metadata["transforms"]`.
        """
        if units.obs_dim != self.obs_dim or units.act_dim != self.act_dim:
            raise ValueError(
                f"units are for obs_dim={units.obs_dim}, act_dim={units.act_dim}; "
                f"the dataset has obs_dim={self.obs_dim}, act_dim={self.act_dim}"
            )
        if units.obs_mean.device != self.device:
            units = copy.deepcopy(units).to(self.device)  # Module.to would move the caller's
        scale, shift = float(units.reward_scale), float(units.reward_shift)
        rewards = units.reward(self.rewards) if (scale, shift) != (1.0, 0.0) else self.rewards
        floor = None if reward_floor is None or scale <= 0 else reward_floor * scale + shift
        mc_returns, valid = self._lower_bound_returns(rewards, floor)
        metadata = {
            **self.metadata,
            "transforms": [*self.metadata.get("transforms", []), units.describe()],
            "mc_lower_bound": valid,
        }
        return self._replace(
            observations=units.obs(self.observations),
            next_observations=units.obs(self.next_observations),
            actions=units.action_to_unit(self.actions),
            rewards=rewards,
            mc_returns=mc_returns,
            metadata=metadata,
        )

    # ------------------------------------------------------------------ internals

    def _replace(self, **changes) -> TransitionDataset:
        """A dataset with some fields changed; new rewards without new returns leave the returns to first use."""
        fields = self._stored()
        if "rewards" in changes:
            fields["mc_returns"] = None
        fields.update({k: v for k, v in changes.items() if k in _TENSOR_FIELDS})
        return TransitionDataset(
            **fields,
            metadata=changes.get("metadata", self.metadata),
            gamma=self.gamma,
            n_episodes=self._n_episodes,
        )

    def _stored(self) -> dict[str, Tensor | None]:
        """The tensor fields as held, without computing anything: `mc_returns` is None until first use."""
        return {name: self._mc_returns if name == "mc_returns" else getattr(self, name) for name in _TENSOR_FIELDS}

    def _lower_bound_returns(self, rewards: Tensor, floor: float | None) -> tuple[Tensor, bool]:
        """`lower_bound_returns` of new rewards, on the host (a one-off, not a training-loop op)."""
        terminals, timeouts = (self.terminals > 0).cpu().numpy(), (self.timeouts > 0).cpu().numpy()
        returns, valid = lower_bound_returns(rewards.cpu().numpy(), terminals, timeouts, self.gamma, floor)
        return torch.from_numpy(returns).to(self.device), valid

    def _mc_returns_of(self, rewards: Tensor) -> Tensor:
        """MC returns for new rewards; computed on the host (a one-off, not a training-loop op)."""
        ends = ((self.terminals > 0) | (self.timeouts > 0)).cpu().numpy()
        returns = compute_mc_returns(rewards.cpu().numpy(), ends, ends, self.gamma)
        return torch.from_numpy(returns).to(self.device)

    def _check_shapes(self) -> None:
        n = self.observations.shape[0]
        if self.observations.ndim != 2 or self.next_observations.shape != self.observations.shape:
            raise ValueError("observations and next_observations must both be (N, obs_dim)")
        if self.actions.ndim != 2 or self.actions.shape[0] != n:
            raise ValueError("actions must be (N, act_dim)")
        given = {name: t for name, t in self._stored().items() if t is not None}
        for name in ("rewards", "terminals", "timeouts", "episode_ids", "mc_returns"):
            if name in given and given[name].shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(given[name].shape)}")
        for name, tensor in given.items():
            expected = torch.int64 if name == "episode_ids" else torch.float32
            if tensor.dtype != expected:
                raise ValueError(f"{name} must be {expected}, got {tensor.dtype}")
        devices = {tensor.device for tensor in given.values()}
        if len(devices) != 1:
            raise ValueError(f"all tensors must be on one device, found {devices}")


_TENSOR_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
    "episode_ids",
    "mc_returns",
)


def _to_tensor(array: np.ndarray, device: str | torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """Zero-copy on CPU (`torch.from_numpy`); one transfer otherwise."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.to(device=device, dtype=dtype or tensor.dtype)


def _accumulation_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
