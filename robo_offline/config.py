"""Typed run configuration: dataclasses behind OmegaConf, composed from YAML groups + overrides.

A run's config is composed like Hydra's, without Hydra: `task=<name>` picks `task/<name>.yaml`,
`algo=<name>` picks `algo/<name>.yaml`, `safety=<name>` picks `safety/<name>.yaml` (default: the
one named like the task, if any), each looked up in the user's directories
(`ROBO_OFFLINE_CONFIGS`, os.pathsep-separated) and then in the project's `configs/` (shipped
inside the package when installed); `--config FILE` layers a user file, and `section.key=value`
overrides one field. Task, algo and user YAMLs are partial `RunConfig`s; a safety YAML is a flat
`SafetyConfig`. The schema is typed per algorithm, so an unknown key or a wrong type fails at load
with the key named, and the resolved config is saved beside every run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from deploy.safety import SafetyConfig
from robo_offline.algos import AlgoConfig, algorithm_class
from robo_offline.algos.convert import CONTINUE_CHOICES
from robo_offline.data.readers import FORMATS
from robo_offline.data.replay import PROPORTIONAL
from robo_offline.data.validation import NONFINITE_POLICIES
from robo_offline.datagen.builtin import DEMO_SOURCES
from robo_offline.datagen.tiers import TIERS
from robo_offline.training.precision import PRECISIONS
from sim.model_task import ModelTaskSpec, register_model_task
from sim.rewards import KINDS as REWARD_KINDS
from sim.tasks import attach_task


def _builtin_config_dir() -> Path:
    """The project's YAML: packaged as robo_offline/configs in a wheel, the checkout's configs/ otherwise."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "configs"


CONFIG_DIR = _builtin_config_dir()
# Searched first, in order: the user's own config directories (os.pathsep-separated), each laid out like
# configs/ (task/, algo/, safety/); a file there shadows the built-in one of the same group and name.
USER_CONFIG_DIRS = [Path(p) for p in os.environ.get("ROBO_OFFLINE_CONFIGS", "").split(os.pathsep) if p]
GROUPS = ("task", "algo", "safety")
DEFAULT_GROUPS = {"task": "pusher", "algo": "bc"}


class ConfigError(ValueError):
    """A config that cannot be composed or fails validation; the message names the key."""


@dataclass
class DemoConfig:
    """How the built-in demos are generated when the task's dataset file does not exist yet.

    behaviour "scripted" | "random": the env's demonstrator at each quality (Pusher);
    "tiers": one D4RL-style tier recorded from the behaviour policies in `policies` (Hopper).
    """

    behaviour: str = "scripted"  # datagen.builtin.DEMO_SOURCES
    qualities: list[str] = field(default_factory=lambda: ["expert", "medium", "poor"])
    episodes_per_quality: int = 100
    seed: int = 0
    tier: str = "medium"  # datagen.tiers.TIERS (behaviour "tiers")
    policies: str = ""  # a shipped policy set (e.g. hopper) or a directory with a manifest.json (behaviour "tiers")
    transitions: int = 100_000  # size of a recorded tier
    action_noise: float = 0.0  # Gaussian noise on the demonstrator's commands (half-ranges), DART-style coverage
    demonstrator: str | None = None  # module:Class of the scripted demonstrator (behaviour "scripted")


@dataclass
class ModelTaskConfig:
    """A task built from a MuJoCo model file (sim/model_task.py); `task.env_id` becomes robo_offline/<name>-v0."""

    file: str = ""  # MJCF path (relative: the working directory, then sim/assets/)
    observations: list[str] = field(default_factory=lambda: ["qpos", "qvel"])  # qpos[:j,..] site:N body:N ...
    frame_skip: int = 5
    max_episode_steps: int = 100
    reset_noise: float = 0.05
    random_joints: list[str] = field(default_factory=list)  # drawn uniformly in their range at reset
    goal_radius: list[float] | None = None  # [min, max] norm of the random joints' positions
    success_sites: list[str] | None = None  # [site_a, site_b]: success when within success_radius
    success_radius: float = 0.02
    termination: str = "never"  # never | success (at the first success) | module:function of observations
    reward: str = "success"  # success | neg_distance


@dataclass
class TaskConfig:
    name: str = "pusher"
    env_id: str = "Pusher-v5"
    dataset: str = "data/pusher-mixed"
    format: str = "auto"  # auto or data.readers.FORMATS
    obs_keys: list[str] | None = None  # order of a Dict observation's keys, in logs and envs alike (None: sorted)
    success: str | None = None  # module:function, (N, obs_dim) observations -> (N,) bools; model tasks: their sites
    nonfinite: str = "fail"  # data.validation.NONFINITE_POLICIES: fail | drop
    collect_if_missing: bool = True  # generate the built-in demos at `dataset` if it is absent
    demos: DemoConfig = field(default_factory=DemoConfig)
    eval_episodes: int = 10  # episode k seeded 10_000 + train.seed + k (sim.evaluation)
    reward: str = "env"  # env | success | module:function (sim/rewards.py); logs are relabelled at load
    reward_floor: float | None = None  # a lower bound of every per-step reward (env or user's), when one is known
    observe_last_action: bool | None = None  # append the last executed action; None: where a rate limit is set
    model: ModelTaskConfig | None = None  # a MuJoCo model file instead of a registered gymnasium id


@dataclass
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 256
    log_every: int = 500
    eval_every: int = 5_000
    checkpoint_every: int = 5_000
    keep_checkpoints: bool = False  # keep every checkpoint as step_<n>.pt, not only last.pt
    seed: int = 0
    # Pretraining only: seeds seed .. seed + seeds - 1 trained together as one batched model (algos/seed_batch.py),
    # each written as its own run in <run_dir>/seed_<s>/; faster on a GPU, not on a CPU (benchmarks/seed_batching.py)
    seeds: int = 1
    device: str = "auto"  # auto (cuda when present) | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    normalize_observations: bool = True
    grad_clip: float | None = None
    compile: bool = False  # torch.compile the update; a CUDA graph on CUDA (no faster on CPU: benchmarks/throughput.py)
    precision: str = "auto"  # auto (bf16 where native and parity measured) | fp32 | bf16 (training/precision.py)
    flush_denormal: bool = True  # subnormal floats slow Cal-QL's backward ~2.5x on CPU
    cache_freed_memory: bool = True  # CPU, glibc: reuse freed blocks, not fresh pages (training/cpu_tuning.py)
    progress: bool = True


@dataclass
class FinetuneConfig:
    """Online phase: from an offline run (`source`), or from scratch (`robo-offline train-online`)."""

    source: str = ""  # offline run directory; empty for online training from scratch
    env_steps: int = 20_000  # online transitions collected in total
    num_envs: int = 2  # gymnasium vector environments stepped together
    utd_ratio: int = 1  # gradient updates per collected transition
    online_fraction: Union[float, str] = "auto"  # share of online rows, proportional, or auto (algos/convert.py)
    buffer_size: int = 1_000_000
    eval_every: int = 2_000  # env steps
    checkpoint_every: int = 5_000  # env steps
    continue_as: str = "auto"  # algos.convert.CONTINUE_CHOICES (see robo_offline/algos/convert.py)
    cql_alpha: float | None = None  # conservative weight online; null keeps the offline value
    distill_steps: int = 2_000  # policy distillation when converting BCQ/TD3+BC/BC (or IQL) to Cal-QL
    random_steps: int = 0  # uniform-random actions first (online from scratch)
    seed: int = 0


@dataclass
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run_dir: str = ""  # empty: runs/<task>-<algo>-<timestamp>


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml parser errors carry line numbers
        raise ConfigError(f"cannot parse {path}: {e}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return cfg


def config_dirs() -> list[Path]:
    """Where group configs are looked up, first match wins: the user's directories, then the built-in one."""
    return [*USER_CONFIG_DIRS, CONFIG_DIR]


def _find_group_file(group: str, name: str) -> Path | None:
    return next((p for d in config_dirs() if (p := d / group / f"{name}.yaml").is_file()), None)


def _group_file(group: str, name: str) -> Path:
    path = _find_group_file(group, name)
    if path is None:
        options = sorted({p.stem for d in config_dirs() for p in (d / group).glob("*.yaml")})
        searched = ", ".join(str(d / group) for d in config_dirs())
        raise ConfigError(f"no {group} config {name!r} in {searched}; available: {options}")
    return path


def task_config_for(env_id: str) -> str | None:
    """The first task config (the user's directories first) whose task runs `env_id`, by name; None if none."""
    for directory in config_dirs():
        for path in sorted((directory / "task").glob("*.yaml")):
            task = OmegaConf.select(_read_yaml(path), "task") or {}
            ids = {task.get("env_id"), f"robo_offline/{task.get('name')}-v0" if task.get("model") else None}
            if env_id in ids:
                return path.stem
    return None


def _task_name(task: str) -> str | None:
    """Default safety group: the file named like the task, when one exists."""
    return task if _find_group_file("safety", task) else None


def _group_layer(group: str, name: str) -> DictConfig:
    layer = _read_yaml(_group_file(group, name))
    return OmegaConf.create({"safety": layer}) if group == "safety" else layer


def _split_args(args: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    groups, dotlist = {}, []
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"override {arg!r} is not of the form key=value")
        key, value = arg.split("=", 1)
        if key in GROUPS:
            groups[key] = value
        else:
            dotlist.append(arg)
    return groups, dotlist


def compose(
    overrides: Sequence[str] = (),
    config_files: Sequence[str | Path] = (),
    defaults: dict[str, str] | None = None,
) -> DictConfig:
    """Compose group YAMLs, user files and `key=value` overrides onto the typed schema."""
    groups, dotlist = _split_args(overrides)
    file_layers = [_read_yaml(Path(f)) for f in config_files]
    from_files = {"algo": name} if (name := _last_algo_name(file_layers)) else {}
    selected = {**DEFAULT_GROUPS, **(defaults or {}), **from_files, **groups}
    selected.setdefault("safety", _task_name(selected["task"]))
    group_layers = [_group_layer(g, selected[g]) for g in GROUPS if selected[g] not in (None, "none")]
    try:
        cli = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad override: {e}") from None
    all_layers = [*group_layers, *file_layers, cli]
    schema = schema_for(selected["algo"])
    try:
        cfg = OmegaConf.merge(schema, *all_layers)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e)) from None
    validate(cfg)
    return with_task(cfg)


def schema_for(algo_name: str) -> DictConfig:
    """The typed schema of a run whose `algo` section is `algo_name`'s config dataclass."""
    try:
        algo_cfg = algorithm_class(algo_name).config_class()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return OmegaConf.structured(RunConfig(algo=algo_cfg))


def _last_algo_name(layers: list[DictConfig]) -> str | None:
    names = [OmegaConf.select(layer, "algo.name") for layer in layers]
    names = [n for n in names if n]
    return names[-1] if names else None


def _explain(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None)
    msg = str(e).splitlines()[0]
    if "not in" in msg and key:
        return f"unknown config key {key!r} ({msg})"
    return f"invalid config value for {key!r}: {msg}" if key else msg


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config {key}: {why}")


def _check_choice(value: Any, choices: Sequence[str], key: str) -> None:
    _check(value in choices, key, f"{value!r} is not {'|'.join(choices)}")


def validate(cfg: DictConfig) -> None:
    """Range and choice checks that the type system cannot express (choices imported from their owners)."""
    t, tr = cfg.task, cfg.train
    _check_choice(t.format, ("auto", *FORMATS), "task.format")
    _check_choice(t.nonfinite, NONFINITE_POLICIES, "task.nonfinite")
    _check(t.eval_episodes >= 0, "task.eval_episodes", "must be >= 0")
    _check(t.demos.episodes_per_quality > 0, "task.demos.episodes_per_quality", "must be > 0")
    _check_choice(t.demos.behaviour, DEMO_SOURCES, "task.demos.behaviour")
    _check_choice(t.demos.tier, TIERS, "task.demos.tier")
    _check(t.demos.transitions > 0, "task.demos.transitions", "must be > 0")
    for key in ("steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
        _check(tr[key] > 0, f"train.{key}", "must be > 0")
    _check(tr.threads >= 0, "train.threads", "must be >= 0")
    _check(tr.seeds >= 1, "train.seeds", "must be >= 1")
    _check_choice(tr.precision, PRECISIONS, "train.precision")
    _check(tr.grad_clip is None or tr.grad_clip > 0, "train.grad_clip", "must be > 0 or null")
    _check(
        tr.device == "auto" or tr.device.split(":")[0] in ("cpu", "cuda", "mps"),
        "train.device",
        f"{tr.device!r} is not auto|cpu|cuda[:N]",
    )
    ft = cfg.finetune
    for key in ("env_steps", "num_envs", "utd_ratio", "buffer_size", "eval_every", "checkpoint_every"):
        _check(ft[key] > 0, f"finetune.{key}", "must be > 0")
    fraction = ft.online_fraction
    _check(
        fraction in ("auto", PROPORTIONAL) or (not isinstance(fraction, str) and 0.0 <= fraction <= 1.0),
        "finetune.online_fraction",
        f"{fraction!r} is not a number in [0, 1], auto or {PROPORTIONAL}",
    )
    _check(t.reward in REWARD_KINDS or ":" in t.reward, "task.reward", f"{t.reward!r} is not env|success|module:fn")
    _check_choice(ft.continue_as, CONTINUE_CHOICES, "finetune.continue_as")
    _check(0.0 < cfg.algo.gamma <= 1.0, "algo.gamma", "must be in (0, 1]")
    safety = to_object(cfg).safety
    try:  # what the YAML gives on its own; the env's model completes it (sim.model_limits) when the env is built
        if safety.action_low or safety.action_high:
            joints = ("joint_pos_indices", "joint_vel_indices", "joint_lower", "joint_upper", "joint_action_indices")
            dataclasses.replace(safety, control_period=None, **dict.fromkeys(joints)).validate()
    except ValueError as e:
        raise ConfigError(f"invalid config safety: {e}") from None


def to_object(cfg: DictConfig) -> RunConfig:
    """The typed dataclass view (attribute access, IDE completion)."""
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def save(cfg: DictConfig, path: str | Path) -> None:
    OmegaConf.save(cfg, Path(path), resolve=True)


# Keys older runs saved that the schema no longer has, and why; dropped when such a run is reloaded.
REMOVED_KEYS = {"task.eval_envs": "evaluation runs its episodes one after another in one environment"}


def load_saved(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Reload a run's saved config (for resume and export), optionally overriding fields."""
    saved = upgrade_saved(_read_yaml(Path(path)))
    schema = schema_for(OmegaConf.select(saved, "algo.name"))
    _, dotlist = _split_args(overrides)
    try:
        cfg = OmegaConf.merge(schema, saved, OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(e)) from None
    validate(cfg)
    return with_task(cfg)


# Task keys added after runs were saved without them: the built-in tasks held this knowledge in code then, so a
# run saved before reads it from its task's YAML (configs/task/<task.name>.yaml), as it ran.
ADDED_TASK_KEYS = ("success", "demos.demonstrator")


def upgrade_saved(saved: DictConfig) -> DictConfig:
    """A config saved by an older version, in today's schema: removed keys dropped, renamed keys renamed, added
    task keys filled as the run had them."""
    for key in REMOVED_KEYS:
        section, name = key.rsplit(".", 1)
        node = OmegaConf.select(saved, section)
        if isinstance(node, DictConfig) and name in node:
            node.pop(name)
    train = OmegaConf.select(saved, "train")
    if isinstance(train, DictConfig) and "bf16" in train:  # train.bf16 became train.precision: keep what it ran in
        train.precision = "bf16" if train.pop("bf16") else "fp32"
    task = OmegaConf.select(saved, "task")
    if not isinstance(task, DictConfig):
        return saved
    missing = [k for k in ADDED_TASK_KEYS if OmegaConf.select(task, k, default="missing") == "missing"]
    path = _find_group_file("task", str(task.get("name"))) if missing else None
    builtin = _read_yaml(path) if path is not None else None
    if builtin is not None and OmegaConf.select(builtin, "task.env_id") == task.get("env_id"):
        for key in missing:
            OmegaConf.update(task, key, OmegaConf.select(builtin, f"task.{key}"), force_add=True)
    return saved


def with_task(cfg: DictConfig) -> DictConfig:
    """Make the config's task known in this process: a model file is registered as a gymnasium id (and
    `task.env_id` pointed at it), and the task's success test, demonstrator and Dict-observation order are
    attached to its env id (`sim.tasks.attach_task`). Plain dicts of older files lack the newer keys."""
    task = cfg.task
    if task.get("model"):
        _register_model_task(cfg)
    demos = task.get("demos") or {}
    try:
        attach_task(task.env_id, task.get("success"), demos.get("demonstrator"), task.get("obs_keys"))
    except ValueError as e:
        raise ConfigError(f"invalid config {e}") from None
    return cfg


def _register_model_task(cfg: DictConfig) -> None:
    model = cfg.task.model
    if not model.file:
        raise ConfigError("invalid config task.model.file: a MuJoCo model file (MJCF) is required")
    fields = {k: v for k, v in as_dict(cfg)["task"]["model"].items() if k != "file"}
    try:
        spec = ModelTaskSpec.from_dict({"model": model.file, **fields})
        cfg.task.env_id = register_model_task(cfg.task.name, spec)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"invalid config task.model: {e}") from None


def as_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
