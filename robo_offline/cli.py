"""`robo-offline` command line: one entry point for collect, inspect, pretrain, export and the main job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from deploy.export import EXPORT_FORMATS, ExportParityError
from robo_offline import config as config_lib
from robo_offline.config import ConfigError
from robo_offline.data import FORMATS, DatasetError
from robo_offline.datagen.tiers import TIERS
from robo_offline.training.checkpoint import CheckpointError, StorageError
from robo_offline.training.interrupt import TrainingInterrupted
from robo_offline.training.run_dir import RunDirError
from robo_offline.training.trainer import NonFiniteLossError, describe_metrics
from robo_offline.workflows.report import METRICS as REPORT_METRICS
from sim.behaviours import BEHAVIOURS
from sim.model_limits import SafetyLimitError
from sim.video import RenderError

OVERRIDES_HELP = "config overrides: task=NAME algo=NAME section.key=value (e.g. train.steps=5000)"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML file layered over the task/algo configs"
    )


def cmd_pretrain(args: argparse.Namespace) -> int:
    from robo_offline.training.run_dir import seed_run_dir
    from robo_offline.workflows.context import seeds_of
    from robo_offline.workflows.pretrain import pretrain

    if args.resume:
        cfg = config_lib.load_saved(Path(args.resume) / "config.yaml", args.overrides)
    else:
        cfg = config_lib.compose(args.overrides, args.config)
    ctx, result = pretrain(cfg, resume=Path(args.resume) if args.resume else None)
    if isinstance(result, list):  # a seed batch: one run per seed
        for seed, evaluation in zip(seeds_of(ctx.cfg), result):
            _report(seed_run_dir(ctx.run_dir, seed), evaluation)
    else:
        _report(ctx.run_dir, result)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from robo_offline.workflows.finetune import finetune, online_run_config

    source, overrides = args.source, list(args.overrides)
    if source and "=" in source:  # `finetune --resume DIR key=value`: no source given
        source, overrides = None, [source, *overrides]
    if args.resume:
        cfg = config_lib.load_saved(Path(args.resume) / "config.yaml", overrides)
    else:
        if not source:
            raise ConfigError("finetune needs the offline run directory: robo-offline finetune RUN_DIR [overrides]")
        cfg = online_run_config(Path(source), overrides)
    ctx, result = finetune(cfg, resume=Path(args.resume) if args.resume else None)
    _report(ctx.run_dir, result)
    return 0


def cmd_train_online(args: argparse.Namespace) -> int:
    from robo_offline.workflows.finetune import train_online

    if args.resume:
        cfg = config_lib.load_saved(Path(args.resume) / "config.yaml", args.overrides)
    else:
        cfg = config_lib.compose(args.overrides, args.config, defaults={"algo": "sac"})
    ctx, result = train_online(cfg, resume=Path(args.resume) if args.resume else None)
    _report(ctx.run_dir, result)
    return 0


def _report(run_dir: Path, result: dict) -> None:
    print(f"run directory: {run_dir}")
    if result:
        print(f"final evaluation: {describe_metrics(result)}")


def cmd_collect(args: argparse.Namespace) -> int:
    from robo_offline.workflows.collect import collect

    path, stats = collect(
        args.env,
        args.behaviour,
        args.out,
        args.episodes,
        transitions=args.transitions,
        quality=args.quality,
        policy=args.policy,
        action_noise=args.action_noise,
        seed=args.seed,
        safety_file=args.safety,
        name=args.name,
        task=args.task,
    )
    success = f", success {stats.success_rate:.0%}" if stats.success_rate is not None else ""
    print(
        f"wrote {len(stats.returns)} episodes to {path}: "
        f"mean return {stats.mean_return:.2f} +- {stats.std_return:.2f}{success}"
    )
    return 0


def cmd_tiers(args: argparse.Namespace) -> int:
    from robo_offline.workflows.tiers import record_tiers

    policies, manifest, logs = record_tiers(
        args.task,
        args.tiers,
        args.out,
        args.transitions,
        seed=args.seed,
        policies=args.policies,
        train=args.train,
        env_steps=args.env_steps,
        snapshot_every=args.snapshot_every,
        overrides=args.overrides,
    )
    for name in ("medium", "expert"):
        snap = manifest.tier_policy(name)
        print(
            f"{name} policy: {policies / snap.file} (SAC after {snap.env_steps} env steps, "
            f"return {snap.mean_return:.0f}, normalised score {snap.normalized_score:.1f})"
        )
    for tier, log in logs.items():
        print(f"{tier}: {log}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from robo_offline.workflows.report import write_report
    from robo_offline.workflows.sweep import run_sweep

    sweep_dir, errors = run_sweep(args.sweep_file, out=args.out, address=args.address, resume=args.resume)
    for error in errors:
        print(f"failed trial: {error}", file=sys.stderr)
    report_dir, table = write_report([sweep_dir])
    print(f"{table}\nsweep directory: {sweep_dir}\nreport: {report_dir / 'report.md'}")
    if errors:
        print(f"{len(errors)} trial(s) failed; rerun them with: robo-offline sweep --resume --out {sweep_dir}")
    return 1 if errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    from robo_offline.workflows.report import write_report

    out, table = write_report(args.dirs, out=args.out, metric=args.metric, reps=args.reps)
    print(f"{table}\nreport: {out / 'report.md'} (curves.png, profile.png)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from robo_offline.data import inspect_dataset

    report = inspect_dataset(args.file, format=args.format, obs_keys=args.obs_keys)
    print(report)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from robo_offline.workflows.export import export_run

    files = export_run(args.run_dir, tuple(args.formats), args.out, Path(args.checkpoint) if args.checkpoint else None)
    for fmt, path in files.items():
        print(f"{fmt}: {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from robo_offline.workflows.evaluate import evaluate_target

    result = evaluate_target(args.target, args.episodes, args.seed, args.video)
    success = f", success {result.success_rate:.0%}" if result.success_rate is not None else ""
    print(
        f"{len(result.returns)} episodes (seeds {result.seeds[0]}..{result.seeds[-1]}): "
        f"return {result.mean_return:.3f} +- {result.std_return:.3f}{success}"
    )
    if args.video:
        print(f"video: {args.video}")
    return 0


def cmd_main_job(args: argparse.Namespace) -> int:
    from robo_offline.workflows.main_job import run_main_job

    run_main_job(args.overrides, args.config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robo-offline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="offline pretraining (algo=bc|iql|cql|bcq|td3bc|calql)")
    _add_config_args(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="online fine-tuning of an offline run in simulation (Cal-QL style)")
    p.add_argument("source", nargs="?", help="offline run directory (omit with --resume)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. finetune.env_steps=50000")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a fine-tuning run from its last checkpoint")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("train-online", help="online training from scratch in simulation (SAC)")
    _add_config_args(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.set_defaults(func=cmd_train_online)

    p = sub.add_parser("collect", help="record a demo log (Minari layout) from a behaviour in simulation")
    p.add_argument("--env", help="gymnasium environment id (default: the task's)")
    p.add_argument(
        "--task", help="task config naming the demonstrator and success test (default: the one for --env, or pusher)"
    )
    p.add_argument("--behaviour", default="scripted", choices=BEHAVIOURS, help="policy: an exported file (--policy)")
    p.add_argument("--quality", default="expert", help="scripted demonstrator quality: expert | medium | poor | 0..1")
    p.add_argument("--policy", help="exported policy file (.pt) for --behaviour policy")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument(
        "--transitions", type=int, help="record whole episodes until this many steps (instead of --episodes)"
    )
    p.add_argument(
        "--action-noise", type=float, default=0.0, help="Gaussian action noise, in half-ranges of the action space"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--safety", help="safety-filter YAML (default: the environment's action bounds only)")
    p.add_argument("--name", help="dataset name stored in the metadata")
    p.add_argument("--out", required=True, help="output directory (a Minari dataset directory)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("tiers", help="D4RL-style random/medium/medium-replay/expert logs from SAC behaviour policies")
    p.add_argument("overrides", nargs="*", help="config overrides for the SAC run (with --train)")
    p.add_argument("--task", default="hopper", help="task config (configs/task/NAME.yaml)")
    p.add_argument(
        "--policies",
        help="behaviour policies (manifest.json + .pt): a directory or a shipped set "
        "(default: the task's shipped set; with --train, where to write them: policies/TASK)",
    )
    p.add_argument("--tiers", nargs="+", default=list(TIERS), choices=TIERS)
    p.add_argument("--transitions", type=int, default=100_000, help="steps per tier (whole episodes)")
    p.add_argument("--out", default="data", help="logs are written to OUT/<task>-<tier>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train", action="store_true", help="first train SAC and export new behaviour policies to --policies"
    )
    p.add_argument("--env-steps", type=int, default=300_000, help="SAC budget with --train")
    p.add_argument(
        "--snapshot-every", type=int, default=10_000, help="env steps between exported snapshots with --train"
    )
    p.set_defaults(func=cmd_tiers)

    p = sub.add_parser("inspect", help="summarise and validate a dataset file")
    p.add_argument("file")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    p.add_argument("--obs-keys", nargs="+", help="robomimic/Minari dict observation keys, in order")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("export", help="export a run's policy (TorchScript .pt and AOTInductor .pt2), parity-checked")
    p.add_argument("run_dir")
    p.add_argument("--formats", nargs="+", default=list(EXPORT_FORMATS), choices=EXPORT_FORMATS)
    p.add_argument("--out", help="output path without suffix (default RUN_DIR/export/policy)")
    p.add_argument("--checkpoint", help="checkpoint file (default RUN_DIR/checkpoints/last.pt)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="evaluate a run or an exported policy in simulation, optionally on video")
    p.add_argument("target", help="run directory or exported policy file (.pt / .pt2)")
    p.add_argument("--episodes", type=int, help="episodes (default: the run's task.eval_episodes)")
    p.add_argument("--seed", type=int, help="episode k is seeded SEED + k (default: the run's evaluation seeds)")
    p.add_argument("--video", help="render the episodes offscreen into this file (.mp4, .gif)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="seeds and hyperparameter searches on Ray Tune (pip install robo-offline[sweep])")
    p.add_argument("sweep_file", nargs="?", help="sweep YAML (see the README's Sweeps; not needed with --resume)")
    p.add_argument("--out", help="sweep directory (default runs/sweeps/<name>; with --resume, the one to continue)")
    p.add_argument("--address", help="join a running Ray cluster (e.g. auto or ray://host:10001) instead of local Ray")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: unfinished trials only")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="IQM and bootstrap CIs over seeds, curves and a performance profile")
    p.add_argument("dirs", nargs="+", help="run directories or directories holding runs (e.g. a sweep)")
    p.add_argument("--metric", help=f"eval.csv column (default: the first of {', '.join(REPORT_METRICS)} present)")
    p.add_argument("--out", help="output directory (default DIR/report for the first DIR)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "main", help="the main job on built-in demos: collect -> pretrain -> fine-tune -> export -> table"
    )
    _add_config_args(p)
    p.set_defaults(func=cmd_main_job)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ConfigError,
        DatasetError,
        CheckpointError,
        ExportParityError,
        NonFiniteLossError,
        RunDirError,
        StorageError,
        SafetyLimitError,
        RenderError,
        FileNotFoundError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"{e}\ncontinue with: robo-offline {_resume_command(args.command, e.run_dir)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted outside a training loop: no checkpoint was written by this stage", file=sys.stderr)
        return 130


def _resume_command(command: str, run_dir: Path) -> str:
    """How to continue an interrupted run: the main job's stages are pretrain and finetune runs, the SAC
    training of `tiers --train` a train-online run."""
    if command not in ("pretrain", "finetune", "train-online"):
        online = "train-online" if command == "tiers" else "pretrain"
        command = "finetune" if config_lib.load_saved(run_dir / "config.yaml").finetune.source else online
    return f"{command} --resume {run_dir}"


if __name__ == "__main__":
    sys.exit(main())
