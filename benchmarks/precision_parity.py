"""Learning parity of `train.precision`: each algorithm trained for the same updates in fp32 and in bf16.

    python benchmarks/precision_parity.py --task arm                                     # the arm's medium demos
    python benchmarks/precision_parity.py --dataset data/hopper-medium --task hopper --steps 5000
    python benchmarks/precision_parity.py --task arm --algos cql calql algo.n_actions=4

`train.precision=auto` takes bf16 autocast only where the hardware multiplies bf16 natively (AMX CPU,
CUDA >= 8.0); this shows whether that costs anything in what the policies learn. Per algorithm and
precision, `--seeds` offline runs on the same data and seeds (via `offline_scores.py`, so finished runs
are kept and interrupted ones resume), then one table: the final evaluation's metric (success % where the
task has one, else the normalised score) as mean +- std over seeds in each precision, the difference
(bf16 - fp32), whether it lies within seed noise (|difference| <= 2 standard errors of the difference
of two means), and the median updates/s of each. Not part of CI: tens of minutes on a CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import offline_scores
import torch

from robo_offline.algos import ALGORITHMS
from robo_offline.training.metrics import read_csv
from robo_offline.training.precision import resolve_precision

from _machine import machine

ALGOS = ["iql", "cql", "calql", "td3bc"]
PRECISIONS = ("fp32", "bf16")


def updates_per_s(run_dir: Path) -> float | None:
    """Median of the run's logged update rates (train.csv), or None if it logged none."""
    path = run_dir / "train.csv"
    logged = read_csv(path).get("updates_per_s", []) if path.is_file() else []
    rates = [r for r in logged if not math.isnan(r)]
    return statistics.median(rates) if rates else None


def within_noise(a: list[float], b: list[float]) -> tuple[float, bool | None]:
    """Difference of means (b - a) and whether it is within 2 standard errors of that difference
    (None with fewer than 2 seeds a side: no noise estimate)."""
    diff = statistics.mean(b) - statistics.mean(a)
    if len(a) < 2 or len(b) < 2:
        return diff, None
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return diff, abs(diff) <= 2 * se


def train_all(args: argparse.Namespace, precision: str) -> None:
    """Every algorithm and seed in one precision, into `args.runs / precision`."""
    ns = argparse.Namespace(
        algos=args.algos,
        task=args.task,
        qualities=[args.quality],
        seeds=args.seeds,
        steps=args.steps,
        eval_episodes=args.eval_episodes,
        dataset=args.dataset,
        env_id=args.env_id,
        data_dir=args.data_dir,
        action_noise=0.0,
        runs=args.runs / precision,
        overrides=[*args.overrides, f"train.precision={precision}"],
    )
    offline_scores.run(ns)


def table(args: argparse.Namespace, metric: str) -> list[str]:
    name = Path(args.dataset).stem if args.dataset else args.quality
    scale = 100.0 if metric == "success_rate" else 1.0
    lines = [
        f"| algo | {metric} fp32 | {metric} bf16 | bf16 - fp32 | within seed noise | fp32 upd/s | bf16 upd/s |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for algo in args.algos:
        finals, rates = {}, {}
        for precision in PRECISIONS:
            dirs = [args.runs / precision / f"{name}-{algo}-s{s}" for s in range(args.seeds)]
            finals[precision] = [scale * offline_scores.finished(d, args.steps)[metric] for d in dirs]
            speeds = [r for r in (updates_per_s(d) for d in dirs) if r is not None]
            rates[precision] = f"{statistics.median(speeds):.0f}" if speeds else "n/a"
        diff, ok = within_noise(finals["fp32"], finals["bf16"])
        noise = "n/a" if ok is None else "yes" if ok else "**no**"
        scores = " | ".join(offline_scores.mean_std(finals[p]) for p in PRECISIONS)
        lines.append(f"| {algo} | {scores} | {diff:+.1f} | {noise} | {rates['fp32']} | {rates['bf16']} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # choices: an override placed after --algos (`--algos cql train.threads=1`) fails here, not as an algorithm
    p.add_argument("--algos", nargs="+", default=ALGOS, choices=list(ALGORITHMS))
    p.add_argument("--task", help="task config: its scripted demos (arm (default), pusher), or the task of --dataset")
    p.add_argument("--quality", default="medium", choices=offline_scores.QUALITIES)
    p.add_argument("--dataset", help="a D4RL-layout (or Minari) log instead of the built-in demos")
    p.add_argument("--env-id", help="environment of --dataset (default: the task's)")
    p.add_argument("--metric", choices=["success_rate", "normalized_score", "mean_return"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-episodes", type=int, default=40)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--runs", type=Path, default=Path("runs/precision_parity"))
    p.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. train.threads=1")
    args = p.parse_args()
    offline_scores.settle_source(p, args, default_task="arm")
    metric = args.metric or ("normalized_score" if args.dataset else "success_rate")
    auto = resolve_precision("auto", torch.device("cpu"))
    if auto.dtype != "bf16":
        print(f"note: train.precision=auto is {auto.describe()} on this machine; bf16 runs here are emulated")
    for precision in PRECISIONS:
        train_all(args, precision)
    data = args.dataset or f"{args.task} {args.quality} demos"
    print(f"\nmachine: {machine()}")
    print(f"{data}: {args.steps} updates per run, {args.seeds} seeds, {args.eval_episodes} evaluation episodes\n")
    print("\n".join(table(args, metric)))


if __name__ == "__main__":
    main()
