"""TD3+BC (Fujimoto & Gu 2021): TD3 with a behaviour-cloning term in the actor loss.

Actor loss -lambda * Q(s, pi(s)) + MSE(pi(s), a), lambda = alpha / mean|Q| (detached), so the
BC weight does not depend on the scale of the rewards. Target policy smoothing, twin-Q minimum
and delayed actor / target updates are TD3's. The delay branches on a host-side update counter
(Python int, checkpointed), never on a tensor value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robo_offline.algos.base import AlgoConfig, Algorithm, adam
from robo_offline.algos.nets import Critic, DeterministicActor, frozen_call, soft_update
from robo_offline.data import Batch


@dataclass
class TD3BCConfig(AlgoConfig):
    """Paper defaults (Fujimoto & Gu 2021, D4RL locomotion)."""

    name: str = "td3bc"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha: float = 2.5  # weight of the Q term relative to BC, after normalisation by mean|Q|
    policy_noise: float = 0.2  # target policy smoothing std (actions in [-1, 1])
    noise_clip: float = 0.5
    policy_delay: int = 2  # actor and targets update every policy_delay critic updates
    tau: float = 0.005
    n_critics: int = 2


def smoothed_target_action(target_action: Tensor, noise: Tensor, noise_std: float, noise_clip: float) -> Tensor:
    """TD3's target policy smoothing: standard normal `noise` scaled by `noise_std` and clipped, then back
    into [-1, 1]."""
    return (target_action + (noise * noise_std).clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td3bc_actor_loss(q: Tensor, pi: Tensor, act: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """(-lambda * mean Q + MSE(pi, a), lambda) with lambda = alpha / mean|Q| detached."""
    lam = alpha / q.abs().mean().detach()
    return -lam * q.mean() + nn.functional.mse_loss(pi, act), lam


class TD3BC(Algorithm):
    config_class = TD3BCConfig
    bf16_parity = True  # arm and Hopper: the same success / score as fp32 within seed noise

    def __init__(self, cfg: TD3BCConfig, obs_dim: int, act_dim: int):
        super().__init__(cfg, obs_dim, act_dim)
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden_dims)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = Critic(obs_dim, act_dim, cfg.hidden_dims, cfg.n_critics)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._last_actor: dict[str, Tensor] = {}

    def build_optimizers(self) -> None:
        self.optimizers["actor"] = adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.optimizers["critic"] = adam(self.critic.parameters(), lr=self.cfg.critic_lr)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.updates += 1
        noise = self.noise(*batch.actions.shape[-2:])
        info = self.phase(self._critic_loss, batch, noise)
        if self.updates % self.cfg.policy_delay == 0:
            self._last_actor = self.phase(self._actor_loss, batch)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
        elif not self._last_actor:  # same keys every step for the trainer's loss watch
            zero = torch.zeros_like(info["critic_loss"])
            self._last_actor = {"actor_loss": zero, "lambda": zero}
        return {**info, **self._last_actor}

    def _critic_loss(self, batch: Batch, noise: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        cfg = self.cfg
        with torch.no_grad():
            next_act = smoothed_target_action(
                self.actor_target(batch.next_observations), noise, cfg.policy_noise, cfg.noise_clip
            )
            q_next = self.critic_target(batch.next_observations, next_act).min(0).values
            td_target = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * q_next
        q = self.critic(batch.observations, batch.actions)
        critic_loss = (q - td_target).pow(2).mean(-1).sum()
        return {"critic": critic_loss}, {"critic_loss": critic_loss.detach(), "q_data": q.detach().mean()}

    def _actor_loss(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        pi = self.actor(batch.observations)
        q_pi = frozen_call(self.critic, batch.observations, pi)[0]  # Q1, as TD3
        actor_loss, lam = td3bc_actor_loss(q_pi, pi, batch.actions, self.cfg.alpha)
        return {"actor": actor_loss}, {"actor_loss": actor_loss.detach(), "lambda": lam}

    def policy(self) -> nn.Module:
        return self.actor

    def critics(self) -> tuple[nn.Module, nn.Module]:
        return self.critic, self.critic_target
