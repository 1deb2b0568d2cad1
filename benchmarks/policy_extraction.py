"""Where an offline policy loses what its critic knows: its actor against its critic's pick of logged-like actions.

    python benchmarks/policy_extraction.py runs/offline_scores/mixed-cql-s0 \
        --candidates runs/offline_scores/mixed-bcq-s0

For a trained run with a critic (CQL, Cal-QL, TD3+BC, IQL, BCQ) and a BCQ run on the same data (its VAE decoder
proposes actions like the logged ones), evaluates on the same start states:

- the run's own deterministic policy;
- the decoder's mean action (z = 0): behaviour cloning by the generative model;
- the run's critic choosing, per state, the best of the decoder's fixed candidates (BCQ's selection rule, without its
  perturbation): the critic's ranking restricted to the data's support;
- with a BCQ run as the first argument, also the decoder's mean with BCQ's perturbation.

Then, on logged states, the critic's Q (min over its ensemble) of the logged action, of the policy's action and of
the best candidate, and how often the policy's action out-scores the best candidate. A policy that does worse than
its own critic's in-support choice while its critic scores it higher is exploiting the critic off the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from robo_offline.workflows.context import EVAL_SEED
from robo_offline.workflows.evaluate import load_trained
from sim.behaviours import PolicyBehaviour
from sim.evaluation import evaluate

from _machine import machine


class CriticChoice(nn.Module):
    """Per state, the decoder candidate (fixed latents) of highest Q, min over the critic ensemble."""

    def __init__(self, decoder: nn.Module, latents: Tensor, critic: nn.Module | None, perturb: nn.Module | None = None):
        super().__init__()
        self.decoder, self.latents, self.critic, self.perturb = decoder, latents, critic, perturb

    def forward(self, obs: Tensor) -> Tensor:
        b, n = obs.shape[0], self.latents.shape[0]
        rep = obs.repeat(n, 1)
        act = self.decoder(rep, self.latents.repeat_interleave(b, dim=0))
        if self.perturb is not None:
            act = self.perturb(rep, act)
        if n == 1:
            return act
        best = self.critic(rep, act).min(0).values.view(n, b).argmax(0)
        return act.view(n, b, -1)[best, torch.arange(b)]


def success(ctx, policy: nn.Module, episodes: int) -> tuple[float, float]:
    ctx.algo.policy = lambda: policy  # the run's env wrappers and units around another policy
    result = evaluate(
        PolicyBehaviour(ctx.env_policy().act),
        ctx.cfg.task.env_id,
        episodes,
        EVAL_SEED + int(ctx.cfg.train.seed),
        ctx.env_wrappers(),
        env_reward=ctx.cfg.task.reward == "env",
    )
    return 100.0 * (result.success_rate or 0.0), result.mean_return


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a trained run with a critic")
    p.add_argument("--candidates", type=Path, required=True, help="a BCQ run on the same data")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--states", type=int, default=4096, help="logged states for the Q statistics")
    args = p.parse_args()
    torch.set_num_threads(1)
    ctx, bcq = load_trained(args.run, with_data=True), load_trained(args.candidates)
    if not (torch.equal(ctx.units.obs_mean, bcq.units.obs_mean) and torch.equal(ctx.units.obs_std, bcq.units.obs_std)):
        raise SystemExit(f"{args.run} and {args.candidates} normalise observations differently: not the same data")
    critic, own = ctx.algo.critics()[0], ctx.algo.policy()
    decoder, latents = bcq.algo.vae.decoder, bcq.algo.eval_latents
    name = ctx.cfg.algo.name
    rows = {
        f"{name} policy": own,
        "decoder mean (z = 0)": CriticChoice(decoder, latents[:1], None),
        f"{name} critic's best of {len(latents)} decoder candidates": CriticChoice(decoder, latents, critic),
    }
    if name == "bcq":
        rows["decoder mean + BCQ perturbation"] = CriticChoice(decoder, latents[:1], None, ctx.algo.actor)
    print(f"machine: {machine()}\n{args.run} (candidates from {args.candidates}), {args.episodes} episodes\n")
    print("| policy | success % | return |\n|---|---:|---:|")
    for name, policy in rows.items():
        rate, ret = success(ctx, policy, args.episodes)
        print(f"| {name} | {rate:.1f} | {ret:.1f} |", flush=True)

    data = ctx.dataset
    idx = torch.randint(0, data.observations.shape[0], (args.states,), generator=torch.Generator().manual_seed(0))
    obs, logged = data.observations[idx], data.actions[idx]
    with torch.no_grad():
        q = lambda act: critic(obs, act).min(0).values  # noqa: E731
        q_logged, q_own, q_best = q(logged), q(own(obs)), q(rows[list(rows)[2]](obs))
    print(
        f"\ncritic on {args.states} logged states: Q(logged) {q_logged.mean():.2f}, Q(policy) {q_own.mean():.2f}, "
        f"Q(best candidate) {q_best.mean():.2f}; the policy's action scores above the best candidate in "
        f"{100 * (q_own > q_best).float().mean():.0f} % of states"
    )


if __name__ == "__main__":
    main()
