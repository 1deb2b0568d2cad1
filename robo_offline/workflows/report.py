"""`robo-offline report DIR...`: runs and sweeps aggregated the way reviewers trust.

Runs are grouped by configuration (every config key that differs between the runs, except the seed and
run-specific paths), and each group is summarised over its seeds by the interquartile mean and the mean with
95% stratified-bootstrap confidence intervals (rliable; Agarwal et al. 2021, "Deep RL at the edge of the
statistical precipice"). Writes a markdown table (`report.md`, also printed), the learning curves with
confidence bands (`curves.png`) and a performance profile (`profile.png`). rliable is optional (`pip install
'robo-offline[report]'`) and imported only here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from robo_offline.config import ConfigError
from robo_offline.training.metrics import read_csv

METRICS = ("success_rate", "normalized_score", "mean_return")  # the default: the first one the runs have
# Keys that differ between seeds of one configuration, or say where rather than what: never a group's identity.
NOT_CONFIGURATION = (
    "run_dir",
    "train.seed",
    "finetune.seed",
    "finetune.source",
    "train.progress",
    "train.device",
    "train.threads",
)
CONFIDENCE = 0.95
INSTALL_HINT = "robo-offline report needs rliable: pip install 'robo-offline[report]'"


@dataclass
class RunCurve:
    path: Path
    config: dict[str, Any]  # flattened: "algo.beta" -> 3.0
    steps: np.ndarray
    values: np.ndarray  # the metric at each evaluation

    @property
    def final(self) -> float:
        return float(self.values[-1])


@dataclass
class GroupSummary:
    label: str
    runs: int
    iqm: float
    iqm_ci: tuple[float, float]
    mean: float
    mean_ci: tuple[float, float]
    finals: list[float]


def find_runs(dirs: Sequence[str | Path], metric: str | None = None) -> tuple[list[RunCurve], str]:
    """Every run under `dirs` (a directory with config.yaml and eval.csv) and the metric reported."""
    paths = sorted({p.parent for d in dirs for p in _configs_under(Path(d)) if (p.parent / "eval.csv").is_file()})
    if not paths:
        raise ConfigError(f"no runs (config.yaml + eval.csv) under {', '.join(str(d) for d in dirs)}")
    tables = {p: read_csv(p / "eval.csv") for p in paths}
    if metric is None:
        metric = next((m for m in METRICS if all(_has(tables[p], m) for p in paths)), None)
        if metric is None:
            raise ConfigError(f"the runs share none of {METRICS}; choose one with --metric")
    runs = []
    for path in paths:
        table = tables[path]
        if not _has(table, metric):
            raise ConfigError(f"{path / 'eval.csv'} has no {metric!r} values")
        keep = ~np.isnan(np.asarray(table[metric], dtype=float))
        steps, values = np.asarray(table["step"])[keep], np.asarray(table[metric], dtype=float)[keep]
        runs.append(RunCurve(path, _flat(OmegaConf.to_container(OmegaConf.load(path / "config.yaml"))), steps, values))
    return runs, metric


def _configs_under(directory: Path) -> list[Path]:
    if not directory.exists():
        raise ConfigError(f"no such directory: {directory}")
    return [directory / "config.yaml", *directory.rglob("*/config.yaml")]


def _has(table: dict[str, list[float]], metric: str) -> bool:
    return metric in table and not np.all(np.isnan(table[metric]))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def group_runs(runs: Sequence[RunCurve]) -> dict[str, list[RunCurve]]:
    """Runs by configuration, labelled with the keys that differ between configurations (in key order); between
    algorithms, only `algo.name` and the keys that also vary within one algorithm (not each one's defaults)."""
    keys = sorted({k for r in runs for k in r.config} - set(NOT_CONFIGURATION))
    varying = [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]
    if "algo.name" in varying:
        by_algo: dict[Any, list[RunCurve]] = {}
        for run in runs:
            by_algo.setdefault(run.config.get("algo.name"), []).append(run)
        varying = [
            k
            for k in varying
            if k == "algo.name" or any(len({repr(r.config.get(k)) for r in rs}) > 1 for rs in by_algo.values())
        ]
    groups: dict[str, list[RunCurve]] = {}
    for run in runs:
        label = ", ".join(f"{k}={run.config.get(k)}" for k in varying) or str(run.config.get("algo.name", "runs"))
        groups.setdefault(label, []).append(run)
    return groups


def summarize_groups(groups: dict[str, list[RunCurve]], reps: int = 2000, seed: int = 0) -> list[GroupSummary]:
    """IQM and mean of each group's final scores with stratified-bootstrap CIs (rliable, `reps` resamples)."""
    rly, metrics = _rliable()
    scores = {label: np.array([[r.final] for r in runs]) for label, runs in groups.items()}  # (seeds, 1 task)
    with _seeded(seed):
        points, intervals = rly.get_interval_estimates(
            scores,
            lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    return [
        GroupSummary(
            label,
            len(groups[label]),
            float(points[label][0]),
            (float(intervals[label][0, 0]), float(intervals[label][1, 0])),
            float(points[label][1]),
            (float(intervals[label][0, 1]), float(intervals[label][1, 1])),
            [float(v) for v in scores[label][:, 0]],
        )
        for label in groups
    ]


def markdown_table(summaries: Sequence[GroupSummary], metric: str) -> str:
    lines = [
        f"| configuration | seeds | IQM {metric} [95% CI] | mean [95% CI] | per seed |",
        "|---|---:|---:|---:|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.label} | {s.runs} | {s.iqm:.3f} [{s.iqm_ci[0]:.3f}, {s.iqm_ci[1]:.3f}] | "
            f"{s.mean:.3f} [{s.mean_ci[0]:.3f}, {s.mean_ci[1]:.3f}] | {', '.join(f'{v:.3f}' for v in s.finals)} |"
        )
    return "\n".join(lines)


def write_report(
    dirs: Sequence[str | Path], out: str | Path | None = None, metric: str | None = None, reps: int = 2000
) -> tuple[Path, str]:
    """Aggregate the runs under `dirs` into `out` (default: the first directory's `report/`); returns the
    directory and the markdown table."""
    runs, metric = find_runs(dirs, metric)
    groups = group_runs(runs)
    summaries = summarize_groups(groups, reps=reps)
    out = Path(out) if out else Path(dirs[0]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summaries, metric)
    sources = "\n".join(f"- {r.path}" for r in runs)
    (out / "report.md").write_text(
        f"# Report: {metric}, final evaluation of each run\n\n{table}\n\n"
        f"IQM: interquartile mean over seeds; intervals: {CONFIDENCE:.0%} stratified bootstrap (rliable, {reps} "
        f"resamples).\n\nRuns:\n{sources}\n"
    )
    _plot_curves(groups, metric, out / "curves.png", reps)
    _plot_profile(groups, metric, out / "profile.png")
    return out, table


def _plot_curves(groups: dict[str, list[RunCurve]], metric: str, path: Path, reps: int) -> None:
    """IQM over seeds at each evaluation step (the steps all of a group's runs evaluated), with its CI band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rly, metrics = _rliable()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, runs in groups.items():
        steps = sorted(set.intersection(*(set(r.steps.tolist()) for r in runs)))
        if not steps:
            continue
        matrix = np.array([[r.values[list(r.steps).index(s)] for s in steps] for r in runs])  # (seeds, steps)
        per_step = {str(i): matrix[:, i : i + 1] for i in range(len(steps))}
        with _seeded(0):
            points, intervals = rly.get_interval_estimates(per_step, metrics.aggregate_iqm, reps=reps)
        iqm = np.array([float(np.ravel(points[str(i)])[0]) for i in range(len(steps))])
        low, high = np.array([np.ravel(intervals[str(i)]) for i in range(len(steps))]).T
        (line,) = ax.plot(steps, iqm, label=f"{label} (n={len(runs)})")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(f"IQM {metric}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_profile(groups: dict[str, list[RunCurve]], metric: str, path: Path) -> None:
    """Fraction of runs whose final score exceeds tau, with bootstrap bands (rliable's performance profile)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rly, _ = _rliable()
    from rliable import plot_utils

    scores = {label: np.array([[r.final] for r in runs]) for label, runs in groups.items()}
    finals = np.concatenate([s.ravel() for s in scores.values()])
    low, high = float(finals.min()), float(finals.max())
    taus = np.linspace(low, high if high > low else low + 1.0, 101)
    with _seeded(0):
        profiles, cis = rly.create_performance_profile(scores, taus)
    fig, ax = plt.subplots(figsize=(7, 4))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax, xlabel=f"{metric} (τ)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """rliable resamples with numpy's global RNG (`np.random.choice`, whatever `random_state` says): seed it for
    reproducible intervals, and give the caller's global state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _rliable():
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return rly, metrics
