"""Implicit Q-Learning (Kostrikov et al. 2022): in-sample Q-learning, never querying unseen actions.

V(s) is an upper expectile of Q(s, a) over the logged actions, so the Bellman target
r + gamma (1 - d) V(s') needs no max over actions; the policy is then extracted by
advantage-weighted regression on the logged actions. Update order follows the paper's code:
V first, then the actor and the critic both with the new V, then the Polyak target.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from robo_offline.algos.base import ActorCritic, AlgoConfig, adam
from robo_offline.algos.nets import Critic, FixedStdGaussianActor, ValueFunction, soft_update
from robo_offline.data import Batch

REWARD_NORMS = ("auto", "iql", "antmaze", "none")
ACTOR_SCHEDULES = ("cosine", "constant")


@dataclass
class IQLConfig(AlgoConfig):
    """Paper defaults for locomotion (Kostrikov et al. 2022, appendix B)."""

    name: str = "iql"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    expectile: float = 0.7  # tau of the expectile regression
    beta: float = 3.0  # inverse temperature of the advantage weights
    max_weight: float = 100.0  # clip of exp(beta * A)
    tau: float = 0.005  # Polyak rate of the target critic
    n_critics: int = 2
    # auto: "iql" for dense rewards, "antmaze" for sparse (success) rewards, as the paper treats locomotion and
    # AntMaze; iql: r * horizon / (max - min episode return), horizon = the env's episode length (1000 for
    # D4RL locomotion, the paper's constant); antmaze: r - 1 (the paper's AntMaze rule); none
    reward_norm: str = "auto"
    # cosine decay over the run (the paper's locomotion config) | constant (its fine-tuning config: no decay);
    # fine-tuning continues whichever schedule ran offline, with no step in the learning rate
    actor_schedule: str = "cosine"


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Asymmetric L2 on diff = Q - V: weight `expectile` above V, 1 - expectile below."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def awr_weights(adv: Tensor, beta: float, max_weight: float) -> Tensor:
    """exp(beta * A) clipped from above: the clip bounds the variance of the weighted regression."""
    return torch.exp(beta * adv).clamp(max=max_weight)


def weighted_nll(log_prob: Tensor, weights: Tensor) -> Tensor:
    """Advantage-weighted negative log-likelihood of the logged actions."""
    return -(weights * log_prob).mean()


def iql_reward_scale(episode_returns: Tensor, horizon: float = 1000.0) -> float:
    """horizon / (max - min episode return): puts dense-reward tasks on one scale, as the paper does."""
    returns = torch.as_tensor(episode_returns, dtype=torch.float64)
    spread = float(returns.max() - returns.min()) if returns.numel() else 0.0
    return horizon / spread if spread > 0 else 1.0


class IQL(ActorCritic):
    config_class = IQLConfig

    def __init__(self, cfg: IQLConfig, obs_dim: int, act_dim: int):
        super().__init__(cfg, obs_dim, act_dim)
        if cfg.reward_norm not in REWARD_NORMS:
            raise ValueError(f"algo.reward_norm must be one of {REWARD_NORMS}, got {cfg.reward_norm!r}")
        if cfg.actor_schedule not in ACTOR_SCHEDULES:
            raise ValueError(f"algo.actor_schedule must be one of {ACTOR_SCHEDULES}, got {cfg.actor_schedule!r}")
        self.actor = FixedStdGaussianActor(obs_dim, act_dim, cfg.hidden_dims)
        self.critic = Critic(obs_dim, act_dim, cfg.hidden_dims, cfg.n_critics)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueFunction(obs_dim, cfg.hidden_dims)

    def build_optimizers(self) -> None:
        cfg = self.cfg
        self.optimizers["value"] = adam(self.value.parameters(), lr=cfg.value_lr)
        self.optimizers["actor"] = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.optimizers["critic"] = adam(self.critic.parameters(), lr=cfg.critic_lr)

    def build_schedulers(self) -> None:
        if self.cfg.actor_schedule == "cosine":
            self.schedulers["actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizers["actor"], T_max=max(self.total_steps, 1)
            )

    def reward_transform(self, episode_returns: Tensor, horizon: int, sparse: bool) -> tuple[float, float]:
        norm = self.cfg.reward_norm
        if norm == "auto":
            norm = "antmaze" if sparse else "iql"
        if norm == "iql":
            return iql_reward_scale(episode_returns, horizon), 0.0
        return (1.0, -1.0) if norm == "antmaze" else (1.0, 0.0)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        q_target, value_loss = self.phase(self._value_loss, batch)
        info = self.phase(self._actor_critic_losses, batch, q_target)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return {"value_loss": value_loss, **info}

    def _value_loss(self, batch: Batch) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        with torch.no_grad():
            q_target = self.critic_target(batch.observations, batch.actions).min(0).values
        value_loss = expectile_loss(q_target - self.value(batch.observations), self.cfg.expectile)
        return {"value": value_loss}, (q_target, value_loss.detach())

    def _actor_critic_losses(self, batch: Batch, q_target: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Both with the V just updated; the critic's loss does not reach the actor, so one step serves both."""
        cfg = self.cfg
        obs, act = batch.observations, batch.actions
        with torch.no_grad():
            v, next_v = self.value(torch.cat([obs, batch.next_observations])).chunk(2)
            adv = q_target - v
            weights = awr_weights(adv, cfg.beta, cfg.max_weight)
            td_target = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * next_v
        actor_loss = weighted_nll(self.actor.log_prob(obs, act), weights)
        q = self.critic(obs, act)
        critic_loss = (q - td_target).pow(2).mean(-1).sum()  # sum of per-critic MSEs, as the paper's code
        return {"actor": actor_loss, "critic": critic_loss}, {
            "actor_loss": actor_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "q_mean": q.detach().mean(),
            "adv_mean": adv.mean(),
            "weight_mean": weights.mean(),
        }
