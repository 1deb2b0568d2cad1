"""Offline-to-online: Cal-QL vs CQL (no calibration) vs IQL, fine-tuned from the same offline data.

    python benchmarks/finetune.py                                       # Pusher medium demos, 3 seeds
    python benchmarks/finetune.py --offline-steps 20000 --env-steps 50000
    python benchmarks/finetune.py --dataset data/hopper-medium --env-id Hopper-v5   # any logged dataset

For each method and seed: pretrain offline, then fine-tune online with evaluations every 2 % of
the online budget. Prints the offline score, the score at 10 % of the online budget, the minimum
score over the first 10 % (the "unlearning dip" Cal-QL is meant to remove) and the final score,
as normalised scores (mean +- std over seeds), and writes one PNG of the offline-to-online
curves. Not part of CI.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from robo_offline import config as C
from robo_offline.finetune import finetune, online_run_config
from robo_offline.pretrain import pretrain

METHODS = {  # name -> (offline algorithm, fine-tuning overrides)
    "calql": ("calql", []),
    "cql": ("cql", ["finetune.continue_as=cql"]),
    "iql": ("iql", ["finetune.continue_as=iql"]),
}


def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    with open(run_dir / "eval.csv", newline="") as f:
        return [(int(float(r["env_steps"])), float(r[key])) for r in csv.DictReader(f) if r.get(key) not in ("", None)]


def summary(points: list[tuple[int, float]], budget: int) -> dict[str, float]:
    early = [v for s, v in points if s <= 0.1 * budget]
    at_10 = min(points, key=lambda p: abs(p[0] - 0.1 * budget))[1]
    return {"offline": points[0][1], "at_10pct": at_10, "min_first_10pct": min(early), "final": points[-1][1]}


def fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} +- {sd:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--offline-steps", type=int, default=10_000)
    p.add_argument("--env-steps", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--dataset", help="logged dataset (default: built-in Pusher demos at medium quality)")
    p.add_argument("--env-id", default="Pusher-v5")
    p.add_argument("--metric", default="normalized_score", choices=["normalized_score", "mean_return", "success_rate"])
    p.add_argument("--runs", type=Path, default=Path("runs/finetune_bench"))
    p.add_argument("overrides", nargs="*", help="extra config overrides for both phases")
    args = p.parse_args()

    data = ([f"task.dataset={args.dataset}", f"task.env_id={args.env_id}", "task.collect_if_missing=false", "safety=none"]
            if args.dataset else ["task.dataset=data/pusher-medium", "task.demos.qualities=[medium]"])
    eval_every = max(1, args.env_steps // 50)
    results: dict[str, list[dict[str, float]]] = {}
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for method in args.methods:
        algo, ft_overrides = METHODS[method]
        for seed in range(args.seeds):
            tag = f"{method}-s{seed}"
            cfg = C.compose([f"algo={algo}", *data, f"train.steps={args.offline_steps}", f"train.seed={seed}",
                             f"train.eval_every={args.offline_steps}", f"train.checkpoint_every={args.offline_steps}",
                             f"task.eval_episodes={args.eval_episodes}", "train.progress=false",
                             f"run_dir={args.runs}/{tag}-offline", *args.overrides])
            ctx, _ = pretrain(cfg)
            ft_cfg = online_run_config(ctx.run_dir, [f"finetune.env_steps={args.env_steps}", f"finetune.eval_every={eval_every}",
                                                     f"finetune.checkpoint_every={args.env_steps}", f"finetune.seed={seed}",
                                                     f"run_dir={args.runs}/{tag}-online", *ft_overrides, *args.overrides])
            ft_ctx, _ = finetune(ft_cfg)
            points = curve(ft_ctx.run_dir, args.metric)
            results.setdefault(method, []).append(summary(points, args.env_steps))
            curves.setdefault(method, []).append(points)
            print(f"{tag}: {results[method][-1]}", flush=True)

    print(f"\n{args.metric}: {args.offline_steps} offline updates, {args.env_steps} online env steps, "
          f"{args.seeds} seeds (mean +- std)\n")
    print("| method | offline | at 10% online | min in first 10% | final | final - offline |\n|---|---:|---:|---:|---:|---:|")
    for method, rs in results.items():
        gain = [r["final"] - r["offline"] for r in rs]
        print(f"| {method} | {fmt([r['offline'] for r in rs])} | {fmt([r['at_10pct'] for r in rs])} | "
              f"{fmt([r['min_first_10pct'] for r in rs])} | {fmt([r['final'] for r in rs])} | {fmt(gain)} |")
    print(f"\ncurves: {plot(curves, args)}")


def plot(curves: dict[str, list[list[tuple[int, float]]]], args: argparse.Namespace) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, runs in curves.items():
        steps = [s for s, _ in runs[0]]
        mean = [statistics.mean(r[i][1] for r in runs) for i in range(min(len(r) for r in runs))]
        ax.plot(steps[: len(mean)], mean, label=method)
    ax.set_xlabel("online environment steps")
    ax.set_ylabel(args.metric)
    ax.set_title("offline-to-online fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend()
    out = args.runs / "finetune_curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


if __name__ == "__main__":
    main()
