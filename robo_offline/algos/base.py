"""What every algorithm shares: its config base, optimiser stepping and checkpointable state.

An algorithm file subclasses `Algorithm` and holds only its networks choice, losses and update
rule; the trainer owns sampling, logging, evaluation and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robo_offline.data import Batch


@dataclass
class AlgoConfig:
    """Hyper-parameters common to all algorithms; subclasses add their own."""

    name: str = "base"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    gamma: float = 0.99


class Algorithm(nn.Module):
    """Losses and update rule of one method, on normalised observations and actions in [-1, 1]."""

    config_class: ClassVar[type[AlgoConfig]] = AlgoConfig

    def __init__(self, cfg: AlgoConfig, obs_dim: int, act_dim: int):
        super().__init__()
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.grad_clip: float | None = None  # set by the trainer from its config
        self.total_steps: int = 1  # set by the trainer; schedules (IQL's cosine) need it
        self.updates: int = 0  # host-side update counter for delays and warm-ups (no device sync); checkpointed

    # -- the part each algorithm writes -------------------------------------------------------
    def setup(self) -> None:
        """Create optimisers and schedulers (called once the trainer has set total_steps)."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """One gradient step; returns detached scalar tensors (no host sync)."""
        raise NotImplementedError

    def policy(self) -> nn.Module:
        """Deterministic policy: normalised observation (B, obs_dim) -> action in [-1, 1]."""
        raise NotImplementedError

    def reward_transform(self, episode_returns: Tensor) -> tuple[float, float]:
        """(scale, shift) applied to the dataset's rewards before training; identity by default."""
        return 1.0, 0.0

    # -- shared machinery ---------------------------------------------------------------------
    def end_schedules(self) -> None:
        """Drop the learning-rate schedules and give each scheduled optimiser its initial rate back.

        An offline schedule (IQL's cosine) ends at a learning rate of 0; continuing online with
        it would freeze that network, so fine-tuning restarts at the configured rate.
        """
        for name in self.schedulers:
            for group in self.optimizers[name].param_groups:
                group["lr"] = group.get("initial_lr", group["lr"])
        self.schedulers.clear()

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        return self.policy()(obs)

    def step(self, name: str, loss: Tensor) -> None:
        """Backward `loss` and step optimiser `name` (and its scheduler), clipping if configured."""
        self.step_all({name: loss})

    def step_all(self, losses: dict[str, Tensor]) -> None:
        """One backward through the sum of losses, then each named optimiser steps.

        Valid when each loss reaches only its own optimiser's parameters (detach or `frozen`
        elsewhere); one backward instead of several also lets `torch.compile` trace the update.
        """
        for name in losses:
            self.optimizers[name].zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        for name in losses:
            opt = self.optimizers[name]
            if self.grad_clip is not None:
                params = [p for g in opt.param_groups for p in g["params"]]
                nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
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
        self.load_state_dict(state["modules"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.updates = int(state.get("updates", 0))
