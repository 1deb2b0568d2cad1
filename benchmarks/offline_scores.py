"""Offline scores: every algorithm on a task's built-in demos per quality level, several seeds, on the success task.

    python benchmarks/offline_scores.py                                  # all algorithms, all levels, 3 seeds
    python benchmarks/offline_scores.py --task arm                       # the example arm's demos
    python benchmarks/offline_scores.py --algos bc iql --qualities mixed --steps 20000
    python benchmarks/offline_scores.py --dataset data/hopper-medium --task hopper        # a log of a task config
    python benchmarks/offline_scores.py --dataset my_log.hdf5 --env-id Hopper-v5         # any D4RL-layout file

Prints mean +- std (over seeds) of the final evaluation's success rate and return (in the run's reward:
Pusher's success reward unless `task.reward=env` is passed; the normalised score only for the env
reward), beside the behaviour that logged the data, and the machine it ran on; then the same finals as
IQM and mean with 95% stratified-bootstrap CIs (`robo-offline report`). Runs go to `--runs`
(default runs/offline_scores). Not part of CI: minutes per run on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from robo_offline import config as C
from robo_offline.algos import ALGORITHMS
from robo_offline.workflows.context import run_reward
from robo_offline.workflows.main_job import demo_summary
from robo_offline.workflows.pretrain import pretrain
from robo_offline.workflows.report import write_report

from _machine import machine

ALGOS = ["bc", "td3bc", "iql", "cql", "calql", "bcq"]
QUALITIES = ["expert", "medium", "poor", "mixed"]


def dataset_overrides(task: str, quality: str, data_dir: Path, noise: float) -> list[str]:
    levels = "[expert,medium,poor]" if quality == "mixed" else f"[{quality}]"
    suffix = f"-noise{noise:g}" if noise else ""
    return [
        f"task={task}",
        f"task.dataset={data_dir}/{task}-{quality}{suffix}",
        f"task.demos.qualities={levels}",
        f"task.demos.action_noise={noise}",
    ]


def settle_source(parser: argparse.ArgumentParser, args: argparse.Namespace, default_task: str) -> None:
    """`--dataset` needs its task config or its env id; without it, `--task` (default `default_task`) names
    the built-in demos."""
    if args.dataset and not (args.task or args.env_id):
        parser.error("--dataset needs --task (the log's task config) or --env-id (its environment)")
    args.task = args.task or (None if args.dataset else default_task)


def mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.1f} +- {sd:.1f}"


def pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def finished(run_dir: Path, steps: int) -> dict | None:
    """The final evaluation of a run that already reached `steps`, else None."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or int(float(rows[-1]["step"])) < steps:
        return None
    return {k: (float(v) if v not in ("", "None") else None) for k, v in rows[-1].items()}


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    sources = (
        [
            (
                args.dataset,
                [
                    # A log gets its own task's reward and success (`--task`), else the env's reward and no
                    # success: the default task's success reward must not relabel another robot's log.
                    *([f"task={args.task}"] if args.task else ["task.reward=env", "task.success=null"]),
                    f"task.dataset={args.dataset}",
                    *([f"task.env_id={args.env_id}"] if args.env_id else []),
                    "task.collect_if_missing=false",
                    "safety=none",
                ],
            )
        ]
        if args.dataset
        else [(q, dataset_overrides(args.task, q, args.data_dir, args.action_noise)) for q in args.qualities]
    )
    for name, data_args in sources:
        for algo in args.algos:
            results = []
            for seed in range(args.seeds):
                cfg = C.compose(
                    [
                        f"algo={algo}",
                        *data_args,
                        f"train.steps={args.steps}",
                        f"train.seed={seed}",
                        f"train.eval_every={args.steps}",
                        f"train.checkpoint_every={args.steps}",
                        f"task.eval_episodes={args.eval_episodes}",
                        "train.progress=false",
                        f"run_dir={args.runs}/{Path(name).stem}-{algo}-s{seed}",
                        *args.overrides,
                    ]
                )
                run_dir = args.runs / f"{Path(name).stem}-{algo}-s{seed}"
                result = finished(run_dir, args.steps)  # a re-run of the benchmark keeps finished runs
                if result is None:  # an interrupted run continues from its checkpoint
                    _, result = pretrain(
                        cfg, resume=run_dir if (run_dir / "checkpoints" / "last.pt").is_file() else None
                    )
                results.append(result)
                print(f"{name} {algo} seed {seed}: {result}", flush=True)
            rows.append(
                {
                    "data": name,
                    "policy": algo,
                    "mean_return": mean_std([r.get("mean_return") for r in results]),
                    "success_rate": mean_std([pct(r.get("success_rate")) for r in results]),
                    "normalized_score": mean_std([r.get("normalized_score") for r in results]),
                }
            )
        behaviour = demo_summary(str(cfg.task.dataset), cfg.task.env_id, run_reward(cfg))
        for b in behaviour:
            rows.append(
                {
                    "data": name,
                    "policy": b["policy"],
                    "mean_return": mean_std([b["return"]]),
                    "success_rate": mean_std([pct(b["success"])]),
                    "normalized_score": mean_std([b["score"]]),
                }
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # choices: an override placed after --algos (`--algos cql train.threads=1`) fails here, not as an algorithm
    p.add_argument("--algos", nargs="+", default=ALGOS, choices=list(ALGORITHMS))
    p.add_argument("--task", help="task config: its scripted demos (pusher (default), arm), or the task of --dataset")
    p.add_argument("--qualities", nargs="+", default=QUALITIES, choices=QUALITIES)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--dataset", help="a D4RL-layout (or Minari/robomimic) file instead of the built-in demos")
    p.add_argument("--env-id", help="environment of --dataset (default: the task's)")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--action-noise", type=float, default=0.0, help="DART-style noise on the demonstrator's commands")
    p.add_argument("--runs", type=Path, default=Path("runs/offline_scores"))
    p.add_argument("overrides", nargs="*", help="extra config overrides, e.g. train.batch_size=512")
    args = p.parse_args()
    settle_source(p, args, default_task="pusher")
    rows = run(args)
    budget = f"{args.steps} updates per run, {args.seeds} seeds, {args.eval_episodes} evaluation episodes"
    print(f"\nmachine: {machine()}\n{budget}, mean +- std over seeds\n")
    print("| data | policy | success % | return | normalised score |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['data']} | {r['policy']} | {r['success_rate']} | {r['mean_return']} | {r['normalized_score']} |")
    names = [args.dataset] if args.dataset else args.qualities
    for name in names:  # the same finals, reported as reviewers trust them
        dirs = [args.runs / f"{Path(name).stem}-{algo}-s{seed}" for algo in args.algos for seed in range(args.seeds)]
        report_dir, table = write_report(dirs, out=args.runs / f"report-{Path(name).stem}")
        print(f"\n{name}: final evaluation, IQM and mean over seeds, 95% stratified-bootstrap CIs (rliable)\n{table}")


if __name__ == "__main__":
    main()
