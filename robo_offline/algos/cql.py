"""Conservative Q-Learning (Kumar et al. 2020), continuous actions, on a SAC backbone.

Follows the official JAX code (young-geng/CQL, also the base of Cal-QL's JaxCQL) and CORL's
`cql.py`. The critic minimises Bellman MSE + cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data)):
Q is pushed down on out-of-distribution actions and up on the logged ones. The logsumexp over
actions is estimated by importance sampling from N uniform actions and N policy actions drawn
at s and at s' (all evaluated at s), each weighted by its inverse proposal density.

Every sampled action of a step comes from one batched actor call, and every Q(s, .) of the
critic loss (data, uniform, current- and next-state policy actions) from one `Critic` call.
Cal-QL changes only `bound_policy_q`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robo_offline.algos.base import adam
from robo_offline.algos.nets import frozen_call, soft_update
from robo_offline.algos.sac import (
    SAC,
    SACConfig,
    entropy_temperature_loss,
    sac_actor_loss,
)
from robo_offline.data import Batch


@dataclass
class CQLConfig(SACConfig):
    """Locomotion defaults of the CQL paper / official code (young-geng/CQL); CORL where they differ."""

    name: str = "cql"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])  # paper and CORL: 3 x 256
    actor_lr: float = 1e-4  # paper and official code (CORL's gym configs use 3e-5)
    critic_lr: float = 3e-4
    alpha_lr: float = 1e-4  # entropy temperature; the official code uses the actor's lr
    tau: float = 0.005
    n_critics: int = 2
    n_actions: int = 10  # N sampled actions per proposal (uniform, pi(.|s), pi(.|s'))
    cql_alpha: float = 5.0  # official code and CORL's ContinuousCQL default (CORL's gym yamls: 10.0)
    temperature: float = 1.0  # of the logsumexp
    lagrange: bool = False  # tune cql_alpha * alpha' so that the gap stays at target_action_gap
    target_action_gap: float = 1.0  # official code's default (Cal-QL's antmaze runs: 0.8)
    max_target_backup: bool = False  # target: max over N next-state policy actions of min_i Q_i
    backup_entropy: bool = False  # subtract alpha * log pi(a'|s') in the target (off in CQL)
    bc_steps: int = 0  # actor trained by maximum likelihood for the first bc_steps updates
    # Initialisation of the official code (young-geng/CQL): output layers shrunk by 1e-2, policy log-std offset -1.
    output_init_scale: float | None = 1e-2
    policy_log_std_offset: float | None = -1.0
    # r * reward_scale + reward_bias; null: 10 and -5 for sparse success rewards (the official Cal-QL AntMaze
    # settings: a success / failure of +-5 per step, so Q spans [-500, 500] and the conservative term's
    # log-densities do not swamp it), 1 and 0 otherwise
    reward_scale: float | None = None
    reward_bias: float | None = None


def max_backup(q_next: Tensor, log_pi_next: Tensor) -> tuple[Tensor, Tensor]:
    """Max over candidate next actions (N, B) -> (B,), with the log-prob of the chosen one."""
    q_max, idx = q_next.max(0)
    return q_max, log_pi_next.gather(0, idx.unsqueeze(0)).squeeze(0)


def importance_sampled_logsumexp(
    q_rand: Tensor,
    q_cur: Tensor,
    q_next: Tensor,
    log_pi_cur: Tensor,
    log_pi_next: Tensor,
    act_dim: int,
    temperature: float = 1.0,
) -> Tensor:
    """Estimate of log sum_a exp Q(s, a) from 3N proposal samples, per critic and state: (C, B).

    q_*: (C, N, B) Q at s of uniform actions, of a ~ pi(.|s) and of a ~ pi(.|s'); log_pi_*: (N, B).
    Each sample is divided by its proposal density (the uniform one on [-1, 1]^d is 0.5^d); the
    constant log N of the mean is dropped, as in the official code (it does not move gradients).
    """
    log_uniform = act_dim * math.log(0.5)
    cat = torch.cat([q_rand - log_uniform, q_next - log_pi_next, q_cur - log_pi_cur], dim=1)
    return torch.logsumexp(cat / temperature, dim=1) * temperature


def conservative_gap(ood: Tensor, q_data: Tensor) -> Tensor:
    """Per critic, batch mean of (push-down estimate - Q of the logged action): (C,)."""
    return (ood - q_data).mean(-1)


class CQL(SAC):
    """SAC plus the conservative term (and its optional Lagrange multiplier alpha')."""

    config_class = CQLConfig
    bf16_parity = True  # arm and Hopper: the same success / score as fp32 within seed noise (Cal-QL too)

    def __init__(self, cfg: CQLConfig, obs_dim: int, act_dim: int):
        super().__init__(cfg, obs_dim, act_dim)
        self.log_alpha_prime = nn.Parameter(torch.ones(()))  # official init (alpha' = e); used if lagrange

    def build_optimizers(self) -> None:
        super().build_optimizers()
        if self.cfg.lagrange:
            self.optimizers["alpha_prime"] = adam([self.log_alpha_prime], lr=self.cfg.critic_lr)

    def learning_rate(self, optimizer: str) -> float:
        return self.cfg.critic_lr if optimizer == "alpha_prime" else super().learning_rate(optimizer)

    def reward_transform(self, episode_returns: Tensor, horizon: int, sparse: bool) -> tuple[float, float]:
        default_scale, default_bias = (10.0, -5.0) if sparse else (1.0, 0.0)
        scale = default_scale if self.cfg.reward_scale is None else self.cfg.reward_scale
        bias = default_bias if self.cfg.reward_bias is None else self.cfg.reward_bias
        return scale, bias

    # -- update -------------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, Tensor]:
        self.updates += 1
        info = self.phase(self._losses, batch, self.update_noise(batch.actions.shape[-2]))
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return info

    def update_noise(self, batch_size: int) -> dict[str, Tensor]:
        """One update's random draws: the actor's sample at s, the N (+ backup) policy candidates at s and s'
        in one draw, and the N uniform candidates (U[0, 1), mapped to [-1, 1] in the loss)."""
        cfg, b, a = self.cfg, batch_size, self.act_dim
        n_next = cfg.n_actions if cfg.max_target_backup else 1
        return {
            "actor": self.noise(b, a),
            "candidates": self.noise(cfg.n_actions + n_next, 2 * b, a),
            "uniform": self.noise(cfg.n_actions, b, a, uniform=True),
        }

    def _losses(self, batch: Batch, noise: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """All losses from the same parameters (as the official code); disjoint parameter sets, one step."""
        new_act, log_pi = self.actor.sample(batch.observations, noise["actor"])
        alpha_loss = entropy_temperature_loss(self.log_alpha, log_pi, self.target_entropy)
        alpha = self.log_alpha.detach().exp()
        actor_loss = self._actor_loss(batch, new_act, log_pi, alpha)
        critic_loss, alpha_prime_loss, info = self._critic_loss(batch, alpha, noise)
        losses = {"alpha": alpha_loss, "actor": actor_loss, "critic": critic_loss}
        if self.cfg.lagrange:
            losses["alpha_prime"] = alpha_prime_loss
        return losses, {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha,
            "alpha_prime_loss": alpha_prime_loss.detach(),
            "log_pi": log_pi.detach().mean(),
            **info,
        }

    def _actor_loss(self, batch: Batch, new_act: Tensor, log_pi: Tensor, alpha: Tensor) -> Tensor:
        if self.updates <= self.cfg.bc_steps:
            return sac_actor_loss(alpha, log_pi, self.actor.log_prob(batch.observations, batch.actions))
        q_pi = frozen_call(self.critic, batch.observations, new_act).min(0).values  # gradients to the actor only
        return sac_actor_loss(alpha, log_pi, q_pi)

    def _critic_loss(
        self, batch: Batch, alpha: Tensor, noise: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        cfg = self.cfg
        obs, next_obs = batch.observations, batch.next_observations
        b, n = obs.shape[0], cfg.n_actions
        with torch.no_grad():
            # One actor forward for the 2B distinct states; n + n_next draws each: CQL candidates at
            # s and at s' (first n), backup actions at s' (last n_next; the s rows of those go unused).
            acts, log_pis = self.actor.sample_n(torch.cat([obs, next_obs]), noise["candidates"])
            cql_act = torch.cat([acts[:n, :b], acts[:n, b:]])  # (2N, B, A): pi(.|s), then pi(.|s')
            cql_log_pi = torch.cat([log_pis[:n, :b], log_pis[:n, b:]])
            td_target = self._td_target(batch, acts[n:, b:], log_pis[n:, b:], alpha)
            rand_act = noise["uniform"] * 2.0 - 1.0
        # One critic call for every Q(s, .): data, uniform, pi(.|s) and pi(.|s') actions, (C, 3N + 1, B).
        q = self.critic.many(obs, torch.cat([batch.actions.unsqueeze(0), rand_act, cql_act]))
        q_data = q[:, 0]
        q_rand, q_cur, q_next = q[:, 1:].reshape(-1, 3, n, b).unbind(1)
        q_cur, q_next, info = self.bound_policy_q(q_cur, q_next, batch)
        log_pi_cur, log_pi_next = cql_log_pi.view(2, n, b).unbind(0)
        ood = importance_sampled_logsumexp(
            q_rand, q_cur, q_next, log_pi_cur, log_pi_next, self.act_dim, cfg.temperature
        )
        gap = conservative_gap(ood, q_data)
        penalty, alpha_prime_loss, alpha_prime = self._penalty(gap)
        bellman = (q_data - td_target).pow(2).mean(-1)
        critic_loss = (bellman + penalty).sum()
        info = {"q_data": q_data.detach().mean(), "cql_gap": gap.detach().mean(), "alpha_prime": alpha_prime, **info}
        return critic_loss, alpha_prime_loss, info

    def _td_target(self, batch: Batch, next_act: Tensor, next_log_pi: Tensor, alpha: Tensor) -> Tensor:
        """r + gamma (1 - d) Q_target(s', a') with a' the best of the candidates `next_act` (N, B, A)."""
        q = self.critic_target.many(batch.next_observations, next_act).min(0).values
        q_next, log_pi = max_backup(q, next_log_pi)
        if self.cfg.backup_entropy:
            q_next = q_next - alpha * log_pi
        return batch.rewards + self.cfg.gamma * (1.0 - batch.terminals) * q_next

    def _penalty(self, gap: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """cql_alpha * gap per critic; with `lagrange`, scaled by alpha' and offset by the target gap."""
        cfg = self.cfg
        if not cfg.lagrange:
            zero = gap.new_zeros(())
            return cfg.cql_alpha * gap, zero, zero
        alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
        penalty = alpha_prime.detach() * cfg.cql_alpha * (gap - cfg.target_action_gap)
        alpha_prime_loss = -(alpha_prime * cfg.cql_alpha * (gap.detach() - cfg.target_action_gap)).mean()
        return penalty, alpha_prime_loss, alpha_prime.detach()

    def bound_policy_q(self, q_cur: Tensor, q_next: Tensor, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Hook on the policy candidates' Q values (C, N, B) before the logsumexp; identity in CQL."""
        return q_cur, q_next, {}
