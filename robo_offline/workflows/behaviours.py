"""Behaviour policies for the data tiers: train SAC online, export snapshots, write the manifest.

`robo-offline tiers --train` runs this; recording the tiers from the manifest is
`robo_offline.datagen.tiers`, which needs no training code.
"""

from __future__ import annotations

import csv
from pathlib import Path

from robo_offline import config as config_lib
from robo_offline.datagen.tiers import Manifest, Snapshot, pick_tiers
from robo_offline.workflows.export import export_run
from robo_offline.workflows.finetune import train_online


def train_behaviours(
    task: str,
    policies_dir: Path,
    env_steps: int,
    snapshot_every: int,
    seed: int = 0,
    overrides: list[str] | None = None,
    run_dir: Path | None = None,
) -> Manifest:
    """Train SAC online, export a snapshot every `snapshot_every` env steps, keep the tier policies."""
    cfg = config_lib.compose(
        [
            f"task={task}",
            "algo=sac",
            f"finetune.env_steps={env_steps}",
            "finetune.num_envs=1",
            f"finetune.eval_every={snapshot_every}",
            f"finetune.checkpoint_every={snapshot_every}",
            f"finetune.seed={seed}",
            f"train.seed={seed}",
            "train.keep_checkpoints=true",
            "finetune.random_steps=5000",  # uniform-random warm-up, as in SAC's Hopper recipe
            *([f"run_dir={run_dir}"] if run_dir else []),
            *(overrides or []),
        ]
    )
    ctx, _ = train_online(cfg)
    return export_snapshots(ctx.run_dir, policies_dir)


def export_snapshots(run_dir: Path, policies_dir: Path, keep_all: bool = False) -> Manifest:
    """Export the run's kept checkpoints (step_<n>.pt) that were evaluated; write the manifest.

    Only the snapshots the tiers use (up to medium, and expert) are kept unless `keep_all`.
    """
    run_dir, policies_dir = Path(run_dir), Path(policies_dir)
    evals = _evaluations(run_dir)
    checkpoints: dict[str, Path] = {}  # snapshot file -> the checkpoint it is exported from
    snapshots = []
    for ckpt in sorted((run_dir / "checkpoints").glob("step_*.pt")):
        step = int(ckpt.stem.split("_")[1])
        if step in evals:
            snapshots.append(Snapshot(f"step_{evals[step]['env_steps']:08d}.pt", **evals[step]))
            checkpoints[snapshots[-1].file] = ckpt
    medium, expert = pick_tiers(snapshots)
    cfg = config_lib.load_saved(run_dir / "config.yaml")
    manifest = Manifest(cfg.task.env_id, snapshots, medium.file, expert.file)
    if not keep_all:
        manifest.snapshots = [*manifest.replay_snapshots(), *([expert] if expert.env_steps > medium.env_steps else [])]
    policies_dir.mkdir(parents=True, exist_ok=True)
    for snap in manifest.snapshots:
        export_run(run_dir, ("torchscript",), policies_dir / Path(snap.file).stem, checkpoints[snap.file])
    manifest.save(policies_dir)
    return manifest


def _evaluations(run_dir: Path) -> dict[int, dict]:
    """update step -> {env_steps, mean_return, normalized_score} from the run's eval.csv."""
    with open(run_dir / "eval.csv", newline="") as f:
        return {
            int(float(r["step"])): {
                "env_steps": int(float(r["env_steps"])),
                "mean_return": float(r["mean_return"]),
                "normalized_score": float(r["normalized_score"]),
            }
            for r in csv.DictReader(f)
        }
