"""How good is each Pusher-v5 behaviour? Success rate, return and speed for random and each demo quality.

Reproduces the Pusher-v5 reference returns in sim/scores.py (random and expert mean returns):

    python benchmarks/demonstrator_quality.py --episodes 100
"""

from __future__ import annotations

import argparse
import time

from sim.behaviours import make_behaviour
from sim.envs import make_env
from sim.evaluation import evaluate

from _machine import machine

ENV_ID = "Pusher-v5"
BEHAVIOURS = (("random", "-"), ("scripted", "poor"), ("scripted", "medium"), ("scripted", "expert"))


def measure(name: str, quality: str, episodes: int, seed: int) -> dict[str, float]:
    behaviour = make_behaviour(name, make_env(ENV_ID), quality=quality if name == "scripted" else "expert", seed=seed)
    start = time.perf_counter()
    result = evaluate(behaviour, ENV_ID, n_episodes=episodes, seed=seed)
    elapsed = time.perf_counter() - start
    return {
        "success": result.success_rate,
        "mean": result.mean_return,
        "std": result.std_return,
        "eps_per_s": episodes / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="episode k is seeded seed + k")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{ENV_ID}, {args.episodes} episodes per behaviour, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print(f"{'behaviour':<10} {'success':>8} {'return (mean +- std)':>24} {'episodes/s':>11}")
    for name, quality in BEHAVIOURS:
        row = measure(name, quality, args.episodes, args.seed)
        label = name if name == "random" else quality
        print(
            f"{label:<10} {row['success']:>8.0%} {row['mean']:>12.2f} +- {row['std']:<8.2f} {row['eps_per_s']:>11.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
