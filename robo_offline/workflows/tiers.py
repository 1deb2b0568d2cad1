"""`robo-offline tiers`: D4RL-style logs recorded from behaviour policies (shipped, given, or trained first)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from robo_offline.datagen.tiers import Manifest, record_tier, resolve_policies
from robo_offline.workflows.behaviours import train_behaviours


def record_tiers(
    task: str,
    tiers: Sequence[str],
    out: str | Path,
    transitions: int,
    *,
    seed: int = 0,
    policies: str | Path | None = None,
    train: bool = False,
    env_steps: int = 300_000,
    snapshot_every: int = 10_000,
    overrides: Sequence[str] = (),
) -> tuple[Path, Manifest, dict[str, Path]]:
    """Each tier's log at OUT/<task>-<tier>; returns (policy directory, manifest, {tier: log}).

    `policies` is a directory with a manifest or a shipped set (default: the task's). With `train`, SAC
    first makes new behaviour policies into `policies` (default policies/<task>).
    """
    if train:
        directory = Path(policies or Path("policies") / task)
        manifest = train_behaviours(task, directory, env_steps, snapshot_every, seed, list(overrides))
    else:
        directory = resolve_policies(policies or task)
        manifest = Manifest.load(directory)
    logs = {}
    for i, tier in enumerate(tiers):
        logs[tier] = record_tier(tier, directory, Path(out) / f"{task}-{tier}", transitions, seed=seed + 1_000_000 * i)
    return directory, manifest, logs
