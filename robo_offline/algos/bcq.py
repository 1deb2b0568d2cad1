"""Batch-Constrained Q-learning (Fujimoto et al. 2019), continuous BCQ.

A conditional VAE models the logged actions; the policy only perturbs VAE samples by at most
phi and picks the best candidate by Q, so it stays on the data's support. The critic target is
a soft clipped double-Q (lambda * min + (1 - lambda) * max over the twin Qs) maximised over N
candidates at s'. Update order is the reference code's: VAE, critic, actor, then both targets.

Evaluation / export policy (deterministic): the reference code samples fresh latents per call;
here `BCQPolicy` decodes a *fixed* latent set of `eval_candidates` rows, stored as a buffer
(row 0 is the prior mean z = 0, the others are drawn once from the clipped prior with a fixed
seed at construction), perturbs each candidate and returns the one with the highest Q1. Same
observation -> same action on every call, no RNG at inference, `torch.jit.script`-able.

The default is `eval_candidates = 10`, the paper's n = 10: BCQ's action selection is the argmax of Q
over perturbed samples of the generative model (the reference code draws 100 fresh ones per call).
An argmax is discontinuous where two candidates' Q values tie; a compiled export (.pt2) reorders
float arithmetic by ~1e-7, which can flip a near-tie, so its parity check allows such flips and
records them in the file's metadata (`deploy.export`). `eval_candidates: 1` is the decoder mean
(z = 0), perturbed: continuous, but not BCQ's policy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from robo_offline.algos.base import AlgoConfig, Algorithm, adam
from robo_offline.algos.nets import ConditionalVAE, Critic, PerturbationActor, VAEDecoder, frozen_call, soft_update
from robo_offline.data import Batch

EVAL_LATENT_SEED = 0


@dataclass
class BCQConfig(AlgoConfig):
    """Paper / reference-code defaults (Fujimoto et al. 2019, github.com/sfujim/BCQ)."""

    name: str = "bcq"
    hidden_dims: list[int] = field(default_factory=lambda: [400, 300])  # actor and critic
    vae_hidden_dims: list[int] = field(default_factory=lambda: [750, 750])
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    vae_lr: float = 1e-3
    tau: float = 0.005
    lmbda: float = 0.75  # soft clipped double-Q weight of the min
    phi: float = 0.05  # max perturbation (actions in [-1, 1])
    kl_weight: float = 0.5
    latent_clip: float = 0.5  # prior samples clipped to [-latent_clip, latent_clip]
    n_candidates: int = 10  # next-state candidates of the critic target
    eval_candidates: int = 10  # fixed latents of the deterministic policy (the paper's n; see above)
    n_critics: int = 2


def vae_loss(recon: Tensor, act: Tensor, mu: Tensor, log_std: Tensor, kl_weight: float = 0.5) -> Tensor:
    """Negative ELBO as BCQ: reconstruction MSE + kl_weight * KL(N(mu, std) || N(0, 1)), both element means."""
    recon_loss = nn.functional.mse_loss(recon, act)
    kl = -0.5 * (1.0 + 2.0 * log_std - mu.pow(2) - (2.0 * log_std).exp()).mean()
    return recon_loss + kl_weight * kl


def soft_clipped_double_q(q: Tensor, lmbda: float) -> Tensor:
    """q (C, N, B) over critics and candidates -> (B,): lambda * min_C + (1 - lambda) * max_C, then max over N."""
    soft = lmbda * q.min(0).values + (1.0 - lmbda) * q.max(0).values
    return soft.max(0).values


def eval_latents(n: int, latent_dim: int, clip: float, seed: int = EVAL_LATENT_SEED) -> Tensor:
    """Fixed latent set: the prior mean first, then clipped prior draws from a private generator."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent_dim, generator=gen).clamp(-clip, clip)
    z[0] = 0.0
    return z


class BCQPolicy(nn.Module):
    """Deterministic BCQ action: decode fixed latents, perturb, keep the candidate of highest Q1."""

    argmax_over_candidates = True  # the export's parity check allows near-tie flips (deploy.export.argmax_flips)

    def __init__(self, decoder: VAEDecoder, actor: PerturbationActor, critic: Critic, latents: Tensor):
        super().__init__()
        self.decoder, self.actor, self.critic = decoder, actor, critic
        self.register_buffer("latents", latents)

    def forward(self, obs: Tensor) -> Tensor:
        b, n = obs.shape[0], self.latents.shape[0]
        obs_rep = obs.repeat(n, 1)  # row k * b + i is obs[i] with latent k
        z = self.latents.repeat_interleave(b, dim=0)
        act = self.actor(obs_rep, self.decoder(obs_rep, z))
        best = self.critic(obs_rep, act)[0].view(n, b).argmax(0)
        act = act.view(n, b, -1)
        return act.gather(0, best.view(1, b, 1).expand(1, b, act.shape[-1])).squeeze(0)


class BCQ(Algorithm):
    config_class = BCQConfig
    bf16_parity = True  # arm medium demos: the same success as fp32 within seed noise

    def __init__(self, cfg: BCQConfig, obs_dim: int, act_dim: int):
        super().__init__(cfg, obs_dim, act_dim)
        latent_dim = 2 * act_dim
        self.vae = ConditionalVAE(obs_dim, act_dim, latent_dim, cfg.vae_hidden_dims, cfg.latent_clip)
        self.actor = PerturbationActor(obs_dim, act_dim, cfg.hidden_dims, cfg.phi)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = Critic(obs_dim, act_dim, cfg.hidden_dims, cfg.n_critics)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.register_buffer("eval_latents", eval_latents(cfg.eval_candidates, latent_dim, cfg.latent_clip))

    def build_optimizers(self) -> None:
        cfg = self.cfg
        self.optimizers["vae"] = adam(self.vae.parameters(), lr=cfg.vae_lr)
        self.optimizers["actor"] = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.optimizers["critic"] = adam(self.critic.parameters(), lr=cfg.critic_lr)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.cfg
        b, latent = batch.actions.shape[-2], self.vae.latent_dim
        vae_loss_value = self.phase(self._vae_loss, batch, self.noise(b, latent))
        info = self.phase(self._critic_loss, batch, self.noise(cfg.n_candidates * b, latent))
        actor_loss = self.phase(self._actor_loss, batch, self.noise(b, latent))
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.actor_target, self.actor, cfg.tau)
        return {"vae_loss": vae_loss_value, **info, "actor_loss": actor_loss}

    def _vae_loss(self, batch: Batch, noise: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        recon, mu, log_std = self.vae(batch.observations, batch.actions, noise)
        loss = vae_loss(recon, batch.actions, mu, log_std, self.cfg.kl_weight)
        return {"vae": loss}, loss.detach()

    def _critic_loss(self, batch: Batch, z: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        cfg = self.cfg
        with torch.no_grad():
            n, b = cfg.n_candidates, batch.observations.shape[0]
            next_rep = batch.next_observations.repeat(n, 1)
            candidates = self.actor_target(next_rep, self.vae.sample(next_rep, z))
            q_next = soft_clipped_double_q(self.critic_target(next_rep, candidates).view(-1, n, b), cfg.lmbda)
            td_target = batch.rewards + cfg.gamma * (1.0 - batch.terminals) * q_next
        q = self.critic(batch.observations, batch.actions)
        critic_loss = (q - td_target).pow(2).mean(-1).sum()
        return {"critic": critic_loss}, {"critic_loss": critic_loss.detach(), "q_data": q.detach().mean()}

    def _actor_loss(self, batch: Batch, z: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        obs = batch.observations
        with torch.no_grad():
            sampled = self.vae.sample(obs, z)
        actor_loss = -frozen_call(self.critic, obs, self.actor(obs, sampled))[0].mean()  # Q1, as the reference code
        return {"actor": actor_loss}, actor_loss.detach()

    def policy(self) -> nn.Module:
        """Deterministic: argmax-Q1 over the perturbed decodings of the fixed latent set (see module doc)."""
        return BCQPolicy(self.vae.decoder, self.actor, self.critic, self.eval_latents)

    def critics(self) -> tuple[nn.Module, nn.Module]:
        return self.critic, self.critic_target
