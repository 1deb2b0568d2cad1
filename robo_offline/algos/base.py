"""What every algorithm shares: its config base, optimiser stepping and checkpointable state.

An algorithm file subclasses `Algorithm` and holds only its networks choice, losses and update
rule; the trainer owns sampling, logging, evaluation and checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robo_offline.data import Batch

FUSED_ADAM_DEVICES = ("cpu", "cuda")


@dataclass
class AlgoConfig:
    """Hyper-parameters common to all algorithms; subclasses add their own."""

    name: str = "base"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    gamma: float = 0.99


def adam(params: Iterable[Tensor], lr: float) -> torch.optim.Adam:
    """Adam in one fused kernel per step where torch has one for the parameters' device (CPU, CUDA): the same
    update rule as the per-tensor loop; BC +11 %, IQL +7 % updates/s in bf16 (AMX Xeon, benchmarks/throughput.py)."""
    params = list(params)
    fused = all(p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


class Algorithm(nn.Module):
    """Losses and update rule of one method, on normalised observations and actions in [-1, 1].

    An update is a sequence of phases (`self.phase(losses_fn, *inputs)`): each computes losses from the
    current parameters and steps their optimisers. Random draws come from `self.noise` outside the
    phases and enter them as inputs, and parameters are read only inside phases: that is what lets a
    `SeedBatch` run the same update for N seeds at once (`train.seeds`).
    """

    config_class: ClassVar[type[AlgoConfig]] = AlgoConfig
    # Uses `batch.mc_returns` as a lower bound on the value (Cal-QL): runs refuse data where none is known.
    needs_return_bound: ClassVar[bool] = False
    # Whether `train.precision=auto` may train this algorithm in bf16 where bf16 matmul is native: true where
    # benchmarks/precision_parity.py measured the same learning as fp32 (README, "Speed"), false where it
    # differed or was not measured.
    bf16_parity: ClassVar[bool] = False

    def __init__(self, cfg: AlgoConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.grad_clip: float | None = None
        self.total_steps: int = 1
        self.updates: int = 0  # host-side update counter for delays and warm-ups (no device sync); checkpointed
        # A `seed_batch.SeedBatch` once `seed_batch.stack_seeds` has stacked N seeds (parameters lead with a seed
        # dim); that module imports this one, so the attribute is typed loosely here.
        self.seed_batch: Any = None

    def setup(self, total_steps: int, grad_clip: float | None = None) -> Algorithm:
        """Optimisers and schedulers for a run of `total_steps` updates (schedules such as IQL's cosine need
        the length); gradients clipped to norm `grad_clip` when given. Call once the module is on its device."""
        self.total_steps, self.grad_clip = max(int(total_steps), 1), grad_clip
        self.optimizers.clear()
        self.schedulers.clear()
        self.build_optimizers()
        self.build_schedulers()
        return self

    # -- the part each algorithm writes -------------------------------------------------------
    def build_optimizers(self) -> None:
        """Fill `self.optimizers` (and `self.schedulers`); `self.total_steps` is set."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step; returns detached scalar tensors (no host sync)."""
        raise NotImplementedError

    def policy(self) -> nn.Module:
        """Deterministic policy: normalised observation (B, obs_dim) -> action in [-1, 1]."""
        raise NotImplementedError

    def reward_transform(self, episode_returns: Tensor, horizon: int, sparse: bool) -> tuple[float, float]:
        """(scale, shift) applied to the rewards before training; identity by default. `horizon` is the env's
        episode length, `sparse` whether the rewards are success / failure values."""
        return 1.0, 0.0

    def critics(self) -> tuple[nn.Module, nn.Module] | None:
        """The Q-ensemble `(obs, act) -> (n_critics, B)` and its target network, for methods that learn one."""
        return None

    # -- what online fine-tuning uses ---------------------------------------------------------
    def explore(self, obs: Tensor) -> Tensor:
        """Exploration action in [-1, 1] for normalised observations; the deterministic policy by default."""
        return self.policy()(obs)

    def q_values(self, obs: Tensor, act: Tensor) -> Tensor | None:
        """Pessimistic Q estimate (min over the ensemble), (B,); None for methods without a critic."""
        critics = self.critics()
        return None if critics is None else critics[0](obs, act).min(0).values

    def load_critic_from(self, other: Algorithm) -> bool:
        """Take over `other`'s Q-ensemble and target when both have one of the same architecture."""
        mine, theirs = self.critics(), other.critics()
        if mine is None or theirs is None or not _same_shapes(mine[0], theirs[0]):
            return False
        for target, source in zip(mine, theirs):
            target.load_state_dict(source.state_dict())
        return True

    # -- shared machinery ---------------------------------------------------------------------
    def learning_rate(self, optimizer: str) -> float:
        """The configured learning rate of optimiser `optimizer` (config field `<name>_lr`)."""
        return float(getattr(self.cfg, f"{optimizer}_lr"))

    def restart_learning_rates(self) -> None:
        """Every optimiser at its configured rate again, schedules restarted from it (after a user's change)."""
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] = self.learning_rate(name)
        self.schedulers.clear()
        self.build_schedulers()

    def build_schedulers(self) -> None:
        """Learning-rate schedules over `total_steps` (none by default)."""

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        return self.policy()(obs)

    def forward(self, fn: Callable[..., Any], *inputs: Any) -> Any:
        """`fn(*inputs)` for a method `fn` of this algorithm: the entry `torch.func.functional_call` needs
        to run a phase with one seed's parameters swapped in (see `SeedBatch`)."""
        return fn(*inputs)

    def phase(self, losses_fn: Callable[..., tuple[dict[str, Tensor], Any]], *inputs: Any) -> Any:
        """`losses_fn(*inputs) -> (losses by optimiser name, info)`; steps those optimisers, returns info.

        With a seed batch the losses are computed for every seed at once (inputs and info then lead
        with the seed dim) and their sum is stepped: each seed's parameters get their own gradient.
        """
        if self.seed_batch is None:
            losses, info = losses_fn(*inputs)
        else:
            losses, info = self.seed_batch.run_phase(self, losses_fn, *inputs)
        self.step_all(losses)
        return info

    def noise(self, *shape: int, uniform: bool = False) -> Tensor:
        """Standard normal (or U[0, 1) with `uniform`) draws of `shape` for one update, on the algorithm's
        device; a seed batch draws each seed's from that seed's generator, as its single run would."""
        device = next(self.parameters()).device
        if self.seed_batch is not None:
            return self.seed_batch.noise(shape, uniform, device)
        return torch.rand(shape, device=device) if uniform else torch.randn(shape, device=device)

    def step_all(self, losses: dict[str, Tensor]) -> None:
        """One backward through the sum of losses, then each named optimiser steps.

        Valid when each loss reaches only its own optimiser's parameters (detach or `frozen_call`
        elsewhere); one backward instead of several also lets `torch.compile` trace the update.
        """
        for name in losses:
            self.optimizers[name].zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        for name in losses:
            opt = self.optimizers[name]
            if self.grad_clip is not None:
                params = [p for g in opt.param_groups for p in g["params"]]
                if self.seed_batch is None:
                    nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
                else:
                    self.seed_batch.clip_grad_norm_(params, self.grad_clip)
            opt.step()
            if name in self.schedulers:
                self.schedulers[name].step()

    def training_state(self) -> dict[str, Any]:
        return {
            "modules": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "updates": self.updates,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Weights, optimiser and scheduler states and the update counter (after `setup`)."""
        self.load_state_dict(state["modules"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.updates = int(state.get("updates", 0))


class ActorCritic(Algorithm):
    """A method with a stochastic actor (`self.actor`: deterministic action in `forward`, `sample` to explore)
    and a Q-ensemble with its Polyak target (`self.critic`, `self.critic_target`): SAC, CQL, Cal-QL, IQL."""

    actor: nn.Module
    critic: nn.Module
    critic_target: nn.Module

    def policy(self) -> nn.Module:
        """The actor's deterministic action (tanh of its Gaussian's mean)."""
        return self.actor

    def critics(self) -> tuple[nn.Module, nn.Module]:
        return self.critic, self.critic_target

    def explore(self, obs: Tensor) -> Tensor:
        """A sample of the actor, inside the action box."""
        return self.actor.sample(obs)[0]


def _same_shapes(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
