"""Turning an offline algorithm into the one that continues online.

Cal-QL, CQL, SAC and IQL continue with their own update. BCQ, TD3+BC and BC have no stochastic
policy to explore with, so they continue as Cal-QL: their greedy policy is distilled into
Cal-QL's tanh-Gaussian actor on the logged observations, and their twin critic is kept when it
has the same architecture, so online training starts from what was learned offline.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from robo_offline.algos import algorithm_class
from robo_offline.algos.base import AlgoConfig, Algorithm

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


def target_algorithm(source: str, continue_as: str) -> str:
    """The online algorithm for an offline `source`; `continue_as` "auto" follows `CONTINUE_AS`."""
    return CONTINUE_AS[source] if continue_as == "auto" else continue_as


def converted_config(source: AlgoConfig, target: str, **overrides: Any) -> AlgoConfig:
    """`target`'s default config with the source's network widths and discount (and `overrides` it has)."""
    cfg = algorithm_class(target).config_class(hidden_dims=list(source.hidden_dims), gamma=source.gamma)
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if k in names})


def distill_policy(
    target: Algorithm,
    teacher: torch.nn.Module,
    observations: torch.Tensor,
    steps: int,
    batch_size: int = 256,
    lr: float = 3e-4,
) -> float:
    """Fit the target's stochastic actor (an online algorithm's: it has `log_prob`) to the teacher's greedy
    actions by maximum likelihood; returns the last loss."""
    opt = torch.optim.Adam(target.actor.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        obs = observations[torch.randint(0, len(observations), (batch_size,), device=observations.device)]
        with torch.no_grad():
            act = teacher(obs).clamp(-0.999, 0.999)
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
