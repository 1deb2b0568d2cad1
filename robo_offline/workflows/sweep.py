"""`robo-offline sweep SWEEP.yaml`: seeds and hyperparameter searches on Ray Tune, every trial an ordinary run.

A sweep file (typed: `SweepSpec`) names the stage every trial runs, the overrides all trials share, a search
space over config keys and a number of seeds (see the README's "Sweeps"). Each trial is a run directory
`<sweep dir>/<trial name>` written by the stage's own workflow (config.yaml, metrics, checkpoints); Ray keeps its
bookkeeping in `<sweep dir>/tune`. Trials report every evaluation row to Tune as they train, so an ASHA scheduler
can stop the weak ones early. A failed trial is reported and the others go on; `--resume` continues unfinished
trials from their own checkpoints and leaves finished ones alone. Ray is optional (`pip install
robo-offline[sweep]`): it is imported only here, when a sweep runs.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robo_offline import config as config_lib
from robo_offline.config import ConfigError
from robo_offline.training.checkpoint import LAST, load_checkpoint
from robo_offline.training.metrics import listening, read_csv
from robo_offline.training.run_dir import seed_run_dir

COMMANDS = ("pretrain", "finetune")
SEARCHES = ("grid", "choice", "uniform", "loguniform")
SPEC_FILE = "sweep.yaml"  # the sweep file, saved in the sweep directory (what --resume reads)
INSTALL_HINT = "robo-offline sweep needs Ray Tune: pip install 'robo-offline[sweep]'"


@dataclass
class Resources:
    cpu: float = 1.0  # per trial; also its torch threads (at least 1), so trials never oversubscribe cores
    gpu: float = 0.0


@dataclass
class Asha:
    """Asynchronous successive halving on `metric`, in training steps (updates)."""

    grace_period: int = 1000  # steps every trial trains before it can be stopped
    reduction_factor: float = 2.0


@dataclass
class SweepSpec:
    name: str = "sweep"
    command: str = "pretrain"  # pretrain | finetune (from `finetune.source=RUN` in overrides or space)
    overrides: list[str] = field(default_factory=list)  # config overrides every trial shares
    # config key -> {grid: [..]} | {choice: [..]} | {uniform: [lo, hi]} | {loguniform: [lo, hi]}
    space: dict[str, Any] = field(default_factory=dict)
    samples: int = 1  # draws of the sampled keys (choice, uniform, loguniform) per grid point
    seeds: int = 1  # train.seed 0 .. seeds-1: a grid axis
    # pretrain only: a trial trains all its configuration's seeds as one batched model (train.seeds) and writes
    # them as <trial>/seed_<s>; off by default: no faster on a CPU (benchmarks/seed_batching.py)
    batch_seeds: bool = False
    metric: str = "success_rate"  # an eval.csv column, reported to Tune at every evaluation
    mode: str = "max"  # max | min
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int = 0  # 0: as many trials at once as the cluster's resources allow
    asha: Asha | None = None  # early stopping (off by default)

    def validate(self) -> SweepSpec:
        _require(re.fullmatch(r"[\w.-]+", self.name) is not None, "name", "letters, digits, '.', '_' or '-' only")
        _require(self.command in COMMANDS, "command", f"{self.command!r} is not {'|'.join(COMMANDS)}")
        _require(self.samples >= 1 and self.seeds >= 1, "samples/seeds", "must be >= 1")
        _require(self.mode in ("max", "min"), "mode", f"{self.mode!r} is not max|min")
        _require(self.resources.cpu > 0 and self.resources.gpu >= 0, "resources", "cpu > 0, gpu >= 0")
        for key, search in self.space.items():
            _require(key != "train.seed", "space", "train.seed is set by `seeds`")
            _require(isinstance(search, dict) and len(search) == 1, f"space.{key}", f"one of {SEARCHES}: [...]")
            ((kind, values),) = search.items()
            _require(kind in SEARCHES, f"space.{key}", f"{kind!r} is not one of {SEARCHES}")
            _require(isinstance(values, list) and len(values) >= 1, f"space.{key}.{kind}", "a list of values")
            if kind in ("uniform", "loguniform"):
                _require(len(values) == 2 and values[0] < values[1], f"space.{key}.{kind}", "[low, high], low < high")
                _require(kind == "uniform" or values[0] > 0, f"space.{key}.{kind}", "low must be > 0")
        _require(not self.batch_seeds or self.command == "pretrain", "batch_seeds", "applies to command pretrain")
        if self.command == "finetune":
            given = any(o.startswith("finetune.source=") for o in self.overrides) or "finetune.source" in self.space
            _require(given, "overrides", "finetune.source=RUN (or finetune.source in space) for command finetune")
        return self

    def trial_count(self) -> int:
        grid = math.prod(len(s["grid"]) for s in self.space.values() if "grid" in s)
        return grid * self.samples * (1 if self.batch_seeds else self.seeds)


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"invalid sweep {key}: {why}")


def load_spec(path: str | Path) -> SweepSpec:
    """The sweep file on the typed schema; an unknown key or a bad value fails naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SweepSpec), OmegaConf.load(path))
        spec: SweepSpec = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None
    spec.space = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in spec.space.items()}
    return spec.validate()


def trial_overrides(spec: SweepSpec, params: dict[str, Any]) -> list[str]:
    """The trial's config overrides: the shared ones, its point in the space, its seed and thread count."""
    point = [f"{key}={_dotlist_value(params[key])}" for key in spec.space]
    threads = max(1, int(spec.resources.cpu))
    seeds = [f"train.seeds={spec.seeds}"] if spec.batch_seeds else []
    return [*spec.overrides, *point, f"train.seed={params['train.seed']}", *seeds, f"train.threads={threads}"]


def trial_name(spec: SweepSpec, params: dict[str, Any]) -> str:
    """A readable, filesystem-safe name from the trial's point and seed (its run directory's name)."""
    parts = [f"{key.rsplit('.', 1)[-1]}={_short(params[key])}" for key in spec.space]
    seed = f"seeds={params['train.seed']}-{params['train.seed'] + spec.seeds - 1}" if spec.batch_seeds else None
    name = ",".join([*parts, seed or f"seed={params['train.seed']}"])
    return re.sub(r"[^\w.,=+-]", "_", name)


def _dotlist_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dotlist_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else _dotlist_value(value)


# -- one trial -------------------------------------------------------------------------------------------------
def run_trial(spec: SweepSpec, params: dict[str, Any], sweep_dir: Path, report) -> None:
    """Train one trial in its run directory, calling `report(row)` with every evaluation row; a run with a
    checkpoint continues from it, a finished run only reports its last evaluation."""
    run_dir = sweep_dir / trial_name(spec, params)
    overrides = trial_overrides(spec, params)
    seed_dirs = _seed_dirs(spec, params, run_dir)
    pending: dict[int, list[dict[str, Any]]] = {}

    def forward(stream: str, step: int, row: dict[str, Any]) -> None:
        """Tune gets one row per evaluation step: the seeds' mean where a trial trains a seed batch."""
        if stream == "eval":
            pending.setdefault(step, []).append(_tune_row(spec, step, row))
            if len(pending[step]) == len(seed_dirs):
                report(_mean_row(pending.pop(step)))

    if all(_finished(d) for d in seed_dirs):
        last = [read_csv(d / "eval.csv") for d in seed_dirs if (d / "eval.csv").is_file()]
        if len(last) == len(seed_dirs):
            report(_mean_row([_tune_row(spec, int(r["step"][-1]), {k: v[-1] for k, v in r.items()}) for r in last]))
        return
    resume = run_dir if (seed_dirs[0] / "checkpoints" / LAST).is_file() else None
    with listening(forward):
        _train(spec, overrides, run_dir, resume)


def _seed_dirs(spec: SweepSpec, params: dict[str, Any], run_dir: Path) -> list[Path]:
    """The run directories a trial writes: itself, or one per seed of its seed batch."""
    if not spec.batch_seeds:
        return [run_dir]
    first = int(params["train.seed"])
    return [seed_run_dir(run_dir, s) for s in range(first, first + spec.seeds)]


def _mean_row(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if all(k in r for r in rows)}


def _train(spec: SweepSpec, overrides: list[str], run_dir: Path, resume: Path | None) -> None:
    from robo_offline.workflows.finetune import finetune, online_run_config
    from robo_offline.workflows.pretrain import pretrain

    quiet = "train.progress=false"
    if resume is not None:
        cfg = config_lib.load_saved(run_dir / "config.yaml")
    elif spec.command == "pretrain":
        cfg = config_lib.compose([*overrides, quiet, f"run_dir={run_dir}"])
    else:
        source = next(o.split("=", 1)[1] for o in overrides if o.startswith("finetune.source="))
        rest = [o for o in overrides if not o.startswith("finetune.source=")]
        cfg = online_run_config(Path(source), [*rest, quiet, f"run_dir={run_dir}"])
    (pretrain if spec.command == "pretrain" else finetune)(cfg, resume=resume)


def _finished(run_dir: Path) -> bool:
    """The run's last checkpoint is its final step (its config's total)."""
    if not (run_dir / "checkpoints" / LAST).is_file() or not (run_dir / "config.yaml").is_file():
        return False
    cfg = config_lib.load_saved(run_dir / "config.yaml")
    total = cfg.finetune.env_steps * cfg.finetune.utd_ratio if cfg.finetune.source else cfg.train.steps
    return int(load_checkpoint(run_dir / "checkpoints", "cpu")["step"]) >= total


def _tune_row(spec: SweepSpec, step: int, row: dict[str, Any]) -> dict[str, float]:
    """Numbers only, with `step` (ASHA's clock) and the sweep's metric always present (NaN where missing)."""
    out = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out["step"] = float(step)
    out.setdefault(spec.metric, float("nan"))
    return out


# -- the sweep -------------------------------------------------------------------------------------------------
def run_sweep(
    spec_file: str | Path | None,
    out: str | Path | None = None,
    address: str | None = None,
    resume: bool = False,
) -> tuple[Path, list[str]]:
    """Run (or with `resume`, continue) a sweep on Ray Tune; returns the sweep directory and the failed trials'
    errors. Without `address` Ray starts locally on this machine's cores."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    sweep_dir, spec = _sweep_dir_and_spec(spec_file, out, resume)
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative paths in configs stay the user's
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_tune_trial, spec_dict=_spec_dict(spec), sweep_dir=str(sweep_dir), cwd=os.getcwd()),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        )
        tune_dir = sweep_dir / "tune"
        if resume and tune_dir.is_dir():
            tuner = tune.Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(spec, tune),
                tune_config=tune.TuneConfig(
                    metric=spec.metric,
                    mode=spec.mode,
                    num_samples=spec.samples,
                    scheduler=_scheduler(spec, tune),
                    max_concurrent_trials=spec.max_concurrent or None,
                ),
                run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=1),
            )
        results = tuner.fit()
        errors = [_failure(spec, sweep_dir, r.config, r.error) for r in results if r.error]
    finally:
        ray.shutdown()
    return sweep_dir, errors


def _failure(spec: SweepSpec, sweep_dir: Path, params: dict[str, Any], error: BaseException) -> str:
    """One line: the trial's run directory and the exception it raised (unwrapped from Ray's task error)."""
    cause = getattr(error, "cause", None) or error
    message = str(cause).strip().splitlines()[-1] if str(cause).strip() else ""
    return f"{sweep_dir / trial_name(spec, params)}: {type(cause).__name__}: {message}"


def _sweep_dir_and_spec(spec_file, out, resume: bool) -> tuple[Path, SweepSpec]:
    if resume:  # the saved copy: the sweep continues as it was started
        sweep_dir = Path(out) if out else None
        if sweep_dir is None:
            raise ConfigError("sweep --resume needs the sweep directory: --out DIR")
        return sweep_dir.resolve(), load_spec(sweep_dir / SPEC_FILE)
    if spec_file is None:
        raise ConfigError("sweep needs a sweep file: robo-offline sweep SWEEP.yaml")
    spec = load_spec(spec_file)
    sweep_dir = (Path(out) if out else Path("runs") / "sweeps" / spec.name).resolve()
    if (sweep_dir / SPEC_FILE).exists():
        raise ConfigError(f"{sweep_dir} already holds a sweep; continue it with --resume --out {sweep_dir}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.structured(spec), sweep_dir / SPEC_FILE)
    return sweep_dir, spec


def _spec_dict(spec: SweepSpec) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(spec))  # type: ignore[return-value]


def _tune_trial(params: dict[str, Any], *, spec_dict: dict[str, Any], sweep_dir: str, cwd: str) -> None:
    """Ray's entry point (in a worker process): the sweep's working directory, then one trial."""
    from ray import tune

    os.chdir(cwd)
    spec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepSpec), spec_dict))
    spec.space = dict(spec_dict["space"])
    run_trial(spec, params, Path(sweep_dir), tune.report)


def _param_space(spec: SweepSpec, tune) -> dict[str, Any]:
    space = {}
    for key, search in spec.space.items():
        ((kind, values),) = search.items()
        space[key] = {
            "grid": lambda v: tune.grid_search(v),
            "choice": lambda v: tune.choice(v),
            "uniform": lambda v: tune.uniform(*v),
            "loguniform": lambda v: tune.loguniform(*v),
        }[kind](values)
    space["train.seed"] = tune.grid_search([0] if spec.batch_seeds else list(range(spec.seeds)))
    return space


def _scheduler(spec: SweepSpec, tune):
    if spec.asha is None:
        return None
    return tune.schedulers.ASHAScheduler(
        time_attr="step",
        max_t=10**12,  # trials end at their own step budget
        grace_period=spec.asha.grace_period,
        reduction_factor=spec.asha.reduction_factor,
    )
