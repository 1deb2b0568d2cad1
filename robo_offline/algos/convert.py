"""Turning an offline algorithm into the one that continues online.

Cal-QL, CQL, SAC and IQL continue with their own update. BCQ, TD3+BC and BC have no stochastic
policy to explore with, so they continue as Cal-QL: their greedy policy is distilled into
Cal-QL's tanh-Gaussian actor on the logged observations, and their twin critic is kept when it
has the same architecture, so online training starts from what was learned offline.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from robo_offline.algos import algorithm_class
from robo_offline.algos.base import AlgoConfig, Algorithm, adam
from robo_offline.algos.nets import TanhGaussianActor

ONLINE = ("calql", "cql", "sac", "iql")  # algorithms with an online update of their own
CONTINUE_AS = {
    "calql": "calql",
    "cql": "cql",
    "sac": "sac",
    "iql": "iql",
    "bcq": "calql",
    "td3bc": "calql",
    "bc": "calql",
}
CONTINUE_CHOICES = ("auto", *ONLINE)  # finetune.continue_as
# finetune.online_fraction "auto": IQL samples its combined buffer uniformly (Kostrikov et al.'s and CORL's
# fine-tuning); Cal-QL and CQL draw half of each batch online (the official Cal-QL runs, mixing_ratio 0.5).
ONLINE_FRACTION = {"iql": "proportional"}
DEFAULT_ONLINE_FRACTION = 0.5


def target_algorithm(source: str, continue_as: str) -> str:
    """The online algorithm for an offline `source`; `continue_as` "auto" follows `CONTINUE_AS`."""
    return CONTINUE_AS[source] if continue_as == "auto" else continue_as


def online_fraction(algorithm: str, configured: float | str) -> float | str:
    """The online share of a batch for `algorithm`: `configured`, or its protocol's where that is "auto"."""
    return ONLINE_FRACTION.get(algorithm, DEFAULT_ONLINE_FRACTION) if configured == "auto" else configured


def converted_config(source: AlgoConfig, target: str, **overrides: Any) -> AlgoConfig:
    """`target`'s default config with the source's network widths and discount (and `overrides` it has)."""
    cfg = algorithm_class(target).config_class(hidden_dims=list(source.hidden_dims), gamma=source.gamma)
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if k in names})


# The distilled policy's std: the level where a Gaussian's entropy per dimension is SAC's target of -1
# (0.5 log(2 pi e) + log std = -1). Maximum likelihood on a greedy teacher's actions would drive the std to its
# clamp instead, and the temperature's start (alpha = 1) would then blow the entropy up online.
DISTILLED_LOG_STD = -1.0 - 0.5 * math.log(2 * math.pi * math.e)


def distill_policy(
    target: Algorithm,
    teacher: torch.nn.Module,
    observations: torch.Tensor,
    steps: int,
    batch_size: int = 256,
    lr: float = 3e-4,
) -> float:
    """Fit the target's stochastic actor to the teacher's greedy actions; returns the last loss.

    A tanh-Gaussian actor (Cal-QL, CQL, SAC) regresses its mean onto the teacher's action and its log-std onto
    `DISTILLED_LOG_STD`; other actors (IQL's fixed-std Gaussian) maximise the teacher action's likelihood.
    """
    opt = adam(target.actor.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        obs = observations[torch.randint(0, len(observations), (batch_size,), device=observations.device)]
        with torch.no_grad():
            act = teacher(obs).clamp(-0.999, 0.999)
        if isinstance(target.actor, TanhGaussianActor):
            mu, log_std = target.actor.heads(obs)
            loss = (torch.tanh(mu) - act).pow(2).mean() + (log_std - DISTILLED_LOG_STD).pow(2).mean()
        else:
            loss = -target.actor.log_prob(obs, act).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def convert(source: Algorithm, target_cfg: AlgoConfig, observations: torch.Tensor, steps: int) -> Algorithm:
    """A new `target_cfg.name` algorithm initialised from `source`: critic copied where it fits, actor distilled
    for `steps` on `observations` (normalised). Not yet `setup`."""
    device = observations.device
    target = algorithm_class(target_cfg.name)(target_cfg, source.obs_dim, source.act_dim).to(device)
    target.load_critic_from(source)
    distill_policy(target, source.policy(), observations, steps)
    return target
