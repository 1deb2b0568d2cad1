"""Soft Actor-Critic (Haarnoja et al. 2018): the online backbone of CQL/Cal-QL, without conservatism.

Used by `robo-offline train-online` to learn from scratch in simulation (e.g. the behaviour
policies of the Hopper data tiers). Twin Q in one batched ensemble, automatic entropy tuning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robo_offline.algos.base import ActorCritic, AlgoConfig, adam
from robo_offline.algos.nets import Critic, TanhGaussianActor, frozen_call, official_init_, soft_update
from robo_offline.data import Batch


@dataclass
class SACConfig(AlgoConfig):
    """Defaults of the SAC paper (v2, automatic temperature)."""

    name: str = "sac"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    tau: float = 0.005
    n_critics: int = 2
    orthogonal_init: bool = False  # see nets.official_init_ (CQL / Cal-QL's settings)
    output_init_scale: float | None = None  # None: PyTorch's default initialisation
    policy_log_std_offset: float | None = None  # None: the plain log-std head


def entropy_temperature_loss(log_alpha: Tensor, log_pi: Tensor, target_entropy: float) -> Tensor:
    """SAC's automatic entropy tuning: alpha grows while the policy's entropy is below target."""
    return -(log_alpha * (log_pi.detach() + target_entropy)).mean()


def sac_actor_loss(alpha: Tensor, log_pi: Tensor, value: Tensor) -> Tensor:
    """alpha * log pi - value; value is min_i Q_i(s, a~pi), or log pi(a_data|s) during BC warm-up."""
    return (alpha * log_pi - value).mean()


def soft_td_target(
    reward: Tensor, terminal: Tensor, q_next: Tensor, log_pi_next: Tensor, alpha: Tensor, gamma: float
) -> Tensor:
    """r + gamma (1 - d) (min_i Q_i(s', a') - alpha log pi(a'|s'))."""
    return reward + gamma * (1.0 - terminal) * (q_next - alpha * log_pi_next)


class SAC(ActorCritic):
    config_class = SACConfig

    def __init__(self, cfg: SACConfig, obs_dim: int, act_dim: int):
        super().__init__(cfg, obs_dim, act_dim)
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden_dims, cfg.policy_log_std_offset)
        self.critic = Critic(obs_dim, act_dim, cfg.hidden_dims, cfg.n_critics)
        if cfg.output_init_scale is not None:
            official_init_(self.actor.net, cfg.orthogonal_init, cfg.output_init_scale)
            official_init_(self.critic.net, cfg.orthogonal_init, cfg.output_init_scale)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = -float(act_dim)

    def build_optimizers(self) -> None:
        cfg = self.cfg
        self.optimizers["alpha"] = adam([self.log_alpha], lr=cfg.alpha_lr)
        self.optimizers["actor"] = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.optimizers["critic"] = adam(self.critic.parameters(), lr=cfg.critic_lr)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        shape = batch.actions.shape[-2:]
        info = self.phase(self._losses, batch, self.noise(*shape), self.noise(*shape))
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return info

    def _losses(self, batch: Batch, next_noise: Tensor, noise: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_act, next_log_pi = self.actor.sample(batch.next_observations, next_noise)
            q_next = self.critic_target(batch.next_observations, next_act).min(0).values
            target = soft_td_target(batch.rewards, batch.terminals, q_next, next_log_pi, alpha, self.cfg.gamma)
        q = self.critic(batch.observations, batch.actions)
        critic_loss = (q - target).pow(2).mean(-1).sum()
        new_act, log_pi = self.actor.sample(batch.observations, noise)
        actor_loss = sac_actor_loss(alpha, log_pi, frozen_call(self.critic, batch.observations, new_act).min(0).values)
        alpha_loss = entropy_temperature_loss(self.log_alpha, log_pi, self.target_entropy)
        return {"critic": critic_loss, "actor": actor_loss, "alpha": alpha_loss}, {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha,
            "q_data": q.detach().mean(),
        }
