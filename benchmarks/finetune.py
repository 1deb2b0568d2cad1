"""Offline-to-online: Cal-QL vs CQL (no calibration) vs IQL, fine-tuned from the same offline data.

    python benchmarks/finetune.py                                       # Pusher success task, medium demos, 3 seeds
    python benchmarks/finetune.py --offline-steps 20000 --env-steps 50000
    python benchmarks/finetune.py --task hopper --dataset data/hopper-medium --metric normalized_score

For each method and seed: pretrain offline, then fine-tune online with an evaluation every 2 % of the
online budget (`--evals`), every evaluation on the same start states. Prints, as mean +- std over seeds:
the offline value of the metric (success rate where the task has one), the minimum over the first 10 %
of online steps (the "unlearning dip" Cal-QL is meant to remove) and its ratio to the offline value, the
final value, the cumulative regret (mean of 1 - success over the online evaluations; 1 - score / 100 for
normalised scores) and the calibration at the end (the critic's mean Q estimate on the evaluation
episodes against their Monte-Carlo return, and the relative gap). Writes one PNG of the curves.
Finished runs are kept: a re-run only prints. Not part of CI: hours on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from robo_offline import config as C
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.workflows.finetune import finetune, online_run_config
from robo_offline.workflows.pretrain import pretrain
from robo_offline.workflows.report import write_report

from _machine import machine

# name -> (offline algorithm, overrides for both phases, fine-tuning overrides). "cql" is Cal-QL with the
# calibration removed (same networks, initialisation and backup), the ablation of Nakamoto et al. 2023.
# IQL is run as its paper fine-tunes: no learning-rate decay, uniform sampling from the combined buffer.
METHODS = {
    "calql": ("calql", [], []),
    "cql": (
        "cql",
        ["algo.hidden_dims=[256,256]", "algo.max_target_backup=true", "algo.orthogonal_init=true"],
        ["finetune.continue_as=cql"],
    ),
    "iql": ("iql", ["algo.actor_schedule=constant"], ["finetune.continue_as=iql"]),
}
CONSERVATIVE = ("calql", "cql")


def curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    with open(run_dir / "eval.csv", newline="") as f:
        return [(int(float(r["env_steps"])), float(r[key])) for r in csv.DictReader(f) if r.get(key) not in ("", None)]


def summary(run_dir: Path, metric: str, budget: int) -> dict[str, float]:
    points = curve(run_dir, metric)
    online = [v for s, v in points if s > 0]
    early = [v for s, v in points if 0 < s <= 0.1 * budget]
    full = 1.0 if metric == "success_rate" else 100.0
    out = {
        "offline": points[0][1],
        "min_first_10pct": min(early),
        "final": points[-1][1],
        "regret": statistics.mean(1.0 - v / full for v in online),
    }
    q, mc = curve(run_dir, "q_estimate"), curve(run_dir, "mc_return")
    if q and mc:
        out |= {
            "q_estimate": q[-1][1],
            "mc_return": mc[-1][1],
            "calibration_gap": abs(q[-1][1] - mc[-1][1]) / abs(mc[-1][1]),
        }
    return out


def fmt(values: list[float], digits: int = 1, scale: float = 1.0) -> str:
    """Mean +- std over seeds; undefined values (a ratio to an offline success of 0) are left out and counted."""
    defined = [scale * v for v in values if v == v]
    if not defined:
        return "n/a"
    sd = statistics.stdev(defined) if len(defined) > 1 else 0.0
    left_out = f" ({len(values) - len(defined)} n/a)" if len(defined) < len(values) else ""
    return f"{statistics.mean(defined):.{digits}f} +- {sd:.{digits}f}{left_out}"


def _finished(run_dir: Path, env_steps: int) -> bool:
    points = curve(run_dir, "env_steps") if (run_dir / "eval.csv").is_file() else []
    return bool(points) and points[-1][1] >= env_steps


def _finished_offline(run_dir: Path, steps: int) -> bool:
    state = run_dir / "checkpoints" / "last.pt"
    return state.is_file() and load_checkpoint(state)["step"] >= steps


def _checkpointed(run_dir: Path) -> Path | None:
    """The run directory of an interrupted run (it holds a checkpoint), for `resume=`."""
    return run_dir if (run_dir / "checkpoints" / "last.pt").is_file() else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--offline-steps", type=int, default=10_000)
    p.add_argument("--env-steps", type=int, default=20_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--evals", type=int, default=50, help="evaluations over the online budget (50: every 2 %%)")
    p.add_argument("--task", default="pusher", help="task config (configs/task/NAME.yaml)")
    p.add_argument("--dataset", help="logged dataset (default: the built-in Pusher demos at medium quality)")
    p.add_argument("--metric", default="success_rate", choices=["success_rate", "normalized_score", "mean_return"])
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
            kept = _finished(online_dir, args.env_steps)
            if not kept:
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
                offline_dir = args.runs / f"{tag}-offline"
                if not _finished_offline(offline_dir, args.offline_steps):  # interrupted runs continue
                    pretrain(cfg, resume=_checkpointed(offline_dir))
                resume = _checkpointed(online_dir)
                finetune(
                    C.load_saved(online_dir / "config.yaml")
                    if resume
                    else online_run_config(
                        offline_dir,
                        [
                            f"finetune.env_steps={args.env_steps}",
                            f"finetune.eval_every={eval_every}",
                            f"finetune.checkpoint_every={args.env_steps}",
                            f"finetune.seed={seed}",
                            f"run_dir={online_dir}",
                            *ft_overrides,
                            *args.overrides,
                        ],
                    ),
                    resume=resume,
                )
            results.setdefault(method, []).append(summary(online_dir, args.metric, args.env_steps))
            print(f"{tag}: {results[method][-1]}" + (" (kept)" if kept else ""), flush=True)
    print_table(results, args)
    print(f"\ncurves: {plot(args)}")
    online = [args.runs / f"{m}-s{seed}-online" for m in args.methods for seed in range(args.seeds)]
    report_dir, table = write_report(online, out=args.runs / "report", metric=args.metric)
    print(f"\nfinal {args.metric}, IQM and mean over seeds with 95% stratified-bootstrap CIs (rliable):\n{table}")
    print(f"report: {report_dir / 'report.md'}")


def print_table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    pct = 100.0 if args.metric == "success_rate" else 1.0
    unit = " (%)" if args.metric == "success_rate" else ""
    print(f"\nmachine: {machine()}")
    print(
        f"{args.task} {args.dataset or 'built-in medium demos'}; {args.metric}{unit}; {args.offline_steps} offline "
        f"updates, {args.env_steps} online env steps, {args.eval_episodes} evaluation episodes every "
        f"{max(1, args.env_steps // args.evals)} steps, {args.seeds} seeds (mean +- std)\n"
    )
    print(
        "| method | offline | min in first 10% | min / offline | final | cumulative regret | Q estimate | "
        "MC return | abs(Q - MC) / abs(MC) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for method, rs in results.items():
        ratio = [r["min_first_10pct"] / r["offline"] if r["offline"] > 0 else float("nan") for r in rs]
        cells = [
            fmt([r["offline"] for r in rs], 1, pct),
            fmt([r["min_first_10pct"] for r in rs], 1, pct),
            fmt(ratio, 2),
            fmt([r["final"] for r in rs], 1, pct),
            fmt([r["regret"] for r in rs], 2),
        ]
        if all("q_estimate" in r for r in rs):
            cells += [fmt([r[k] for r in rs], 2) for k in ("q_estimate", "mc_return", "calibration_gap")]
        else:
            cells += ["n/a"] * 3
        print(f"| {method} | " + " | ".join(cells) + " |")


def plot(args: argparse.Namespace) -> Path:
    """Mean over seeds with a min-max band, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for method in args.methods:
        runs = [curve(args.runs / f"{method}-s{seed}-online", args.metric) for seed in range(args.seeds)]
        n = min(len(r) for r in runs)
        steps = [runs[0][i][0] for i in range(n)]
        values = [[r[i][1] for r in runs] for i in range(n)]
        ax.plot(steps, [statistics.mean(v) for v in values], label=method)
        ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.15)
    ax.set_xlabel("online environment steps")
    ax.set_ylabel(args.metric)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(
        f"offline-to-online fine-tuning: {args.task}, {args.dataset or 'medium demos'}, "
        f"{args.seeds} seeds (band: min-max)",
        fontsize=9,
    )
    out = args.runs / "finetune_curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


if __name__ == "__main__":
    main()
