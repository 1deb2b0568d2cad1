"""Offline-to-online: Cal-QL vs CQL (no calibration) vs IQL, fine-tuned from the same offline data.

    python benchmarks/finetune.py                                       # Pusher medium demos, 3 seeds
    python benchmarks/finetune.py --offline-steps 20000 --env-steps 50000
    python benchmarks/finetune.py --task hopper --dataset data/hopper-medium   # any task and logged dataset

For each method and seed: pretrain offline, then fine-tune online with evaluations every 2 % of
the online budget (`--evals`). Prints the offline score, the score at 10 % of the online budget, the minimum
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
from robo_offline.workflows.finetune import finetune, online_run_config
from robo_offline.workflows.pretrain import pretrain

# name -> (offline algorithm, overrides for both phases, fine-tuning overrides). "cql" is Cal-QL with the
# calibration removed (same networks and backup), the ablation of Nakamoto et al. 2023.
METHODS = {
    "calql": ("calql", [], []),
    "cql": ("cql", ["algo.hidden_dims=[256,256]", "algo.max_target_backup=true"], ["finetune.continue_as=cql"]),
    "iql": ("iql", [], ["finetune.continue_as=iql"]),
}
CONSERVATIVE = ("calql", "cql")


def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    with open(run_dir / "eval.csv", newline="") as f:
        return [(int(float(r["env_steps"])), float(r[key])) for r in csv.DictReader(f) if r.get(key) not in ("", None)]


def summary(points: list[tuple[int, float]], budget: int) -> dict[str, float]:
    early = [v for s, v in points if s <= 0.1 * budget]
    at_10 = min(points, key=lambda p: abs(p[0] - 0.1 * budget))[1]
    return {"offline": points[0][1], "at_10pct": at_10, "min_first_10pct": min(early), "final": points[-1][1]}


def fmt(values: list[float], digits: int = 1) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} +- {sd:.{digits}f}"


def final_success(run_dir: Path) -> dict[str, float]:
    """Success rate at the first and last evaluation, for tasks that define success."""
    points = curve(run_dir, "success_rate")
    return {"success_offline": points[0][1], "success_final": points[-1][1]} if points else {}


def _finished(run_dir: Path, env_steps: int) -> bool:
    points = curve(run_dir, "env_steps")
    return bool(points) and points[-1][1] >= env_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--offline-steps", type=int, default=10_000)
    p.add_argument("--env-steps", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--evals", type=int, default=50, help="evaluations over the online budget (50: every 2 %%)")
    p.add_argument("--task", default="pusher", help="task config (configs/task/NAME.yaml)")
    p.add_argument("--dataset", help="logged dataset (default: built-in Pusher demos at medium quality)")
    p.add_argument("--metric", default="normalized_score", choices=["normalized_score", "mean_return", "success_rate"])
    p.add_argument("--runs", type=Path, default=Path("runs/finetune_bench"))
    p.add_argument(
        "--n-actions",
        type=int,
        default=4,
        help="CQL-family sampled actions per state (official: 10; the update costs ~3 n_actions + 1 critic passes)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    p.add_argument("overrides", nargs="*", help="extra config overrides for both phases")
    args = p.parse_args()

    data = [
        f"task={args.task}",
        *(
            [f"task.dataset={args.dataset}"]
            if args.dataset
            else ["task.dataset=data/pusher-medium", "task.demos.qualities=[medium]"]
        ),
    ]
    eval_every = max(1, args.env_steps // args.evals)
    results: dict[str, list[dict[str, float]]] = {}
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for method in args.methods:
        algo, algo_overrides, ft_overrides = METHODS[method]
        algo_overrides = [
            *algo_overrides,
            f"train.threads={args.threads}",
            *([f"algo.n_actions={args.n_actions}"] if algo in CONSERVATIVE else []),
        ]
        for seed in range(args.seeds):
            tag = f"{method}-s{seed}"
            online_dir = args.runs / f"{tag}-online"
            kept = (online_dir / "checkpoints" / "last.pt").exists() and _finished(online_dir, args.env_steps)
            if not kept:  # a re-run of the benchmark keeps finished runs
                cfg = C.compose(
                    [
                        f"algo={algo}",
                        *data,
                        *algo_overrides,
                        f"train.steps={args.offline_steps}",
                        f"train.seed={seed}",
                        f"train.eval_every={args.offline_steps}",
                        f"train.checkpoint_every={args.offline_steps}",
                        f"task.eval_episodes={args.eval_episodes}",
                        "train.progress=false",
                        f"run_dir={args.runs}/{tag}-offline",
                        *args.overrides,
                    ]
                )
                ctx, _ = pretrain(cfg)
                finetune(
                    online_run_config(
                        ctx.run_dir,
                        [
                            f"finetune.env_steps={args.env_steps}",
                            f"finetune.eval_every={eval_every}",
                            f"finetune.checkpoint_every={args.env_steps}",
                            f"finetune.seed={seed}",
                            f"run_dir={online_dir}",
                            *ft_overrides,
                            *args.overrides,
                        ],
                    )
                )
            points = curve(online_dir, args.metric)
            results.setdefault(method, []).append(summary(points, args.env_steps) | final_success(online_dir))
            curves.setdefault(method, []).append(points)
            print(f"{tag}: {results[method][-1]}" + (" (kept)" if kept else ""), flush=True)

    print(
        f"\n{args.metric}: {args.offline_steps} offline updates, {args.env_steps} online env steps, "
        f"{args.seeds} seeds (mean +- std)\n"
    )
    success = all("success_offline" in r for rs in results.values() for r in rs)
    print(
        "| method | offline | at 10% online | min in first 10% | min / offline | final | final - offline |"
        + (" success offline -> final |" if success else "")
        + "\n|---|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if success else "")
    )
    for method, rs in results.items():
        gain = [r["final"] - r["offline"] for r in rs]
        ratio = [r["min_first_10pct"] / r["offline"] if r["offline"] > 0 else float("nan") for r in rs]
        cells = [fmt([r[k] for r in rs]) for k in ("offline", "at_10pct", "min_first_10pct")]
        cells += [fmt(ratio, 2), fmt([r["final"] for r in rs]), fmt(gain)]
        if success:
            before, after = (fmt([100 * r[k] for r in rs], 0) for k in ("success_offline", "success_final"))
            cells.append(f"{before}% -> {after}%")
        row = f"| {method} | " + " | ".join(cells) + " |"
        print(row)
    print(f"\ncurves: {plot(curves, args)}")


def plot(curves: dict[str, list[list[tuple[int, float]]]], args: argparse.Namespace) -> Path:
    """Mean over seeds with a min-max band; a second panel with the success rate where the task has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {args.metric: curves}
    success = {
        m: [curve(args.runs / f"{m}-s{seed}-online", "success_rate") for seed in range(len(runs))]
        for m, runs in curves.items()
    }
    if args.metric != "success_rate" and all(all(r) for r in success.values()):
        panels["success_rate"] = success
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (name, by_method) in zip(axes[0], panels.items()):
        for method, runs in by_method.items():
            n = min(len(r) for r in runs)
            steps = [runs[0][i][0] for i in range(n)]
            values = [[r[i][1] for r in runs] for i in range(n)]
            ax.plot(steps, [statistics.mean(v) for v in values], label=method)
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.15)
        ax.set_xlabel("online environment steps")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"offline-to-online fine-tuning: {args.task}, {args.dataset or 'data/pusher-medium'}, "
        f"{len(next(iter(curves.values())))} seeds (band: min-max)",
        fontsize=9,
    )
    out = args.runs / "finetune_curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


if __name__ == "__main__":
    main()
