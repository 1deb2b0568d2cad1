"""What every run derives from its config: device, run directory, dataset, units and algorithm.

Pretraining, fine-tuning and export assemble their runs from here, so a run is built one way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from deploy.policy_module import EnvPolicy
from deploy.units import EnvUnits
from robo_offline import config as config_lib
from robo_offline.algos import Algorithm, algorithm_class
from robo_offline.algos.seed_batch import stack_seeds
from robo_offline.config import ConfigError
from robo_offline.data import TransitionDataset, load_dataset
from robo_offline.datagen.builtin import ensure_task_data
from robo_offline.training.calibration import calibration
from robo_offline.training.checkpoint import CheckpointError
from robo_offline.training.rng import seed_everything
from robo_offline.training.run_dir import owned_run_dir, unique_run_dir
from sim.behaviours import PolicyBehaviour
from sim.envs import make_env
from sim.evaluation import evaluate
from sim.model_limits import with_model_limits
from sim.rewards import RelabelReward, RewardSpec, resolve_reward
from sim.tasks import flattened_dict_keys
from sim.wrappers import LastActionObservation, SafetyFilterWrapper

EVAL_SEED = 10_000  # evaluation seeds start here (plus train.seed), far from the data's and the collectors'


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def claimed_run_dir(cfg: DictConfig, stage: str = "", resume: Path | None = None) -> Iterator[Path]:
    """The run's directory, created and locked for the block: `resume`, `cfg.run_dir`, or a new
    runs/<task>-<algo>[-<stage>]-<timestamp>-<suffix> that no other run can get."""
    if resume or cfg.run_dir:
        path = Path(resume or cfg.run_dir)
    else:
        path = unique_run_dir(Path("runs"), "-".join(p for p in (cfg.task.name, cfg.algo.name, stage) if p))
    with owned_run_dir(path, resume=resume is not None) as path:
        yield path


@dataclass
class RunContext:
    """Everything a run derives from its config; shared by pretraining, fine-tuning and export."""

    cfg: DictConfig
    run_dir: Path | None  # set once the run claims its directory (after the data loaded)
    device: torch.device
    dataset: TransitionDataset | None  # transformed (normalised, scaled) and on device; None online from scratch
    raw_dataset: TransitionDataset | None  # as loaded, on the CPU
    algo: Algorithm
    units: EnvUnits  # env units <-> training units, on `device`
    reward: RewardSpec  # what the run optimises (task.reward), offline and online alike
    last_action: bool  # the policy observes the last executed action after the observation
    observation_layout: list[dict]  # name, start, stop, units of each part of the policy's input

    def env_policy(self) -> EnvPolicy:
        """The algorithm's deterministic policy in environment units (no safety filter: the env wrapper has it)."""
        return EnvPolicy(self.algo.policy(), self.units)

    def env_wrappers(self) -> list:
        """Around the task's env, in order: the run's reward, the safety filter, the last-action observation."""
        safety = config_lib.to_object(self.cfg).safety
        reward = [lambda env: RelabelReward(env, self.reward)] if self.reward.relabels else []
        last_action = [LastActionObservation] if self.last_action else []
        return [*reward, lambda env: SafetyFilterWrapper(env, safety), *last_action]

    @property
    def reward_floor(self) -> float | None:
        """The reward floor in training units (None: unknown)."""
        scale, shift = float(self.units.reward_scale), float(self.units.reward_shift)
        return None if self.reward.floor is None or scale <= 0 else self.reward.floor * scale + shift

    @property
    def eval_seed(self) -> int:
        """Evaluation episode k is seeded `eval_seed + k`: one set of start states for every row of a run."""
        return EVAL_SEED + int(self.cfg.train.seed)

    def eval_metrics(self) -> dict[str, Any]:
        """The run's evaluation of its current algorithm through the safety filter, with calibration."""
        task = self.cfg.task
        result = evaluate(
            PolicyBehaviour(self.env_policy().act),
            task.env_id,
            n_episodes=task.eval_episodes,
            seed=self.eval_seed,
            wrappers=self.env_wrappers(),
            env_reward=not self.reward.relabels,
        )
        return {
            **result.metrics(),
            "eval_seed": self.eval_seed,
            **calibration(self.algo, self.units, result.episodes, self.cfg.algo.gamma),
        }

    def run_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the algorithm to rebuild the deployable policy."""
        return {
            "algo_name": self.cfg.algo.name,
            "obs_dim": self.algo.obs_dim,
            "act_dim": self.algo.act_dim,
            "units": {k: v.cpu() for k, v in self.units.state_dict().items()},
            "reward": self.reward.name,
            "last_action_input": self.last_action,
            "observation_layout": self.observation_layout,
            "env_id": self.cfg.task.env_id,
            "config": config_lib.as_dict(self.cfg),
        }


def checkpoint_units(state: dict[str, Any], path: Path) -> EnvUnits:
    """The run's `EnvUnits` from a checkpoint; checkpoints from before `EnvUnits` are converted."""
    if "units" in state:
        return EnvUnits.from_state(state["units"])
    legacy = ("normalizer", "action_bounds", "reward_transform")
    missing = [k for k in legacy if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: the checkpoint has no 'units' entry (nor the older {list(legacy)}; "
            f"missing {missing}); it was not written by robo-offline's trainer"
        )
    norm, bounds, reward = (state[k] for k in legacy)
    return EnvUnits(norm["mean"], norm["std"], bounds["low"], bounds["high"], reward["scale"], reward["shift"])


def check_units(stored: EnvUnits, current: EnvUnits, path: Path, changed: Sequence[str] = ()) -> None:
    """The run's transform recomputed from its config and data must be the one its checkpoint was trained in."""
    current = current.cpu()
    differ = [k for k, v in stored.state_dict().items() if not torch.allclose(v.cpu(), current.state_dict()[k])]
    if differ:
        hint = f" (the config changed algo keys {list(changed)})" if changed else ""
        raise ConfigError(
            f"{path}: the checkpoint's {differ} differ from what the config and data give now{hint}; continue "
            "with the dataset, reward and algorithm settings the run was trained with"
        )


def load_task_dataset(cfg: DictConfig, env=None) -> TransitionDataset:
    """Load the task's dataset, generating the built-in demos first where the task allows it."""
    task = cfg.task
    if task.collect_if_missing:
        ensure_task_data(task, config_lib.to_object(cfg).safety)
    env = env or make_env(task.env_id)
    return load_dataset(
        task.dataset,
        format=task.format,
        obs_keys=task.obs_keys,
        gamma=cfg.algo.gamma,
        nonfinite=task.nonfinite,
        observation_space=env.observation_space,
        action_space=env.action_space,
    )


def run_reward(cfg: DictConfig) -> RewardSpec:
    try:
        return resolve_reward(cfg.task.reward, cfg.task.env_id, cfg.task.reward_floor)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def observes_last_action(cfg: DictConfig) -> bool:
    """`task.observe_last_action`, by default on exactly where the safety filter limits the action's rate."""
    if cfg.task.observe_last_action is not None:
        return bool(cfg.task.observe_last_action)
    return config_lib.to_object(cfg).safety.max_delta is not None


def build_context(cfg: DictConfig, total_steps: int, with_data: bool = True) -> RunContext:
    """Seeded algorithm, set up for `total_steps` updates, and the transformed dataset (`with_data=False`:
    online training from scratch, no dataset).

    The logged dataset becomes training data in three steps: its rewards relabelled with the run's
    reward, its observations extended by the last executed action (where the policy observes it), then
    `EnvUnits` (normalisation, action scaling, the algorithm's reward transform).
    """
    train = cfg.train
    if train.threads:
        torch.set_num_threads(train.threads)
    seed_everything(train.seed)
    device = resolve_device(train.device)
    reward, last_action = run_reward(cfg), observes_last_action(cfg)
    env = make_env(cfg.task.env_id)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    act_dim = env.action_space.shape[0]
    obs_dim = env.observation_space.shape[0] + (act_dim if last_action else 0)
    horizon = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 1000
    safe_action = with_model_limits(config_lib.to_object(cfg).safety, env).resolved_safe_action()
    raw = load_task_dataset(cfg, env) if with_data else None
    layout = observation_layout(raw, env, act_dim if last_action else 0)
    env.close()
    algo = build_algorithm(cfg, obs_dim, act_dim, device)
    units = EnvUnits.identity(obs_dim, low, high)
    data = None
    if raw is not None:
        logged = raw.relabelled(reward, reward.name) if reward.relabels else raw
        logged = logged.with_last_actions(torch.tensor(safe_action)) if last_action else logged
        mean, std = logged.observation_stats() if train.normalize_observations else (units.obs_mean, units.obs_std)
        scale, shift = algo.reward_transform(logged.episode_returns(), horizon=horizon, sparse=reward.sparse)
        units = EnvUnits(mean, std, low, high, scale, shift)
        data = logged.transformed(units, reward.floor).to(device)
        if algo.needs_return_bound and not data.metadata["mc_lower_bound"]:
            raise ConfigError(
                f"{cfg.algo.name}: its reference value must be a lower bound on the return, and the data has "
                f"time-limited episodes with negative {reward.name!r} rewards but no known floor; set "
                "task.reward_floor (a lower bound of every per-step reward) or use task.reward=success"
            )
    algo.to(device).setup(total_steps, train.grad_clip)
    return RunContext(cfg, None, device, data, raw, algo, units.to(device), reward, last_action, layout)


def seeds_of(cfg: DictConfig) -> list[int]:
    """The seeds a run trains: `train.seed` and, for a seed batch, the `train.seeds - 1` after it."""
    return list(range(cfg.train.seed, cfg.train.seed + cfg.train.seeds))


def checks_units(ctx: RunContext, run_dir: Path) -> Callable[[dict[str, Any]], None]:
    """The check a resumed checkpoint of `run_dir` must pass: it was trained in the units `ctx` derives now."""
    return lambda state: check_units(checkpoint_units(state, run_dir), ctx.units, run_dir)


def build_algorithm(cfg: DictConfig, obs_dim: int, act_dim: int, device: torch.device) -> Algorithm:
    """The run's algorithm, initialised from `torch.manual_seed(train.seed)`; with `train.seeds > 1` the seeds'
    networks stacked into one model (`algos.seed_batch`), each initialised as its single run would be."""
    algo_cfg = config_lib.to_object(cfg).algo

    def build() -> Algorithm:
        return algorithm_class(cfg.algo.name)(algo_cfg, obs_dim, act_dim)

    if cfg.train.seeds > 1:
        return stack_seeds(build, seeds_of(cfg), device)
    torch.manual_seed(cfg.train.seed)
    return build()


def observation_layout(raw: TransitionDataset | None, env, last_action_dim: int) -> list[dict]:
    """Name, slice and units of each part of the policy's input: the log's observation keys, a model-file task's
    terms or a Dict env's keys (in the flattening order), or one `observation` block; then the last executed
    action where the policy observes it. A Dict log and a Dict env whose keys differ are refused, naming both."""
    obs_dim = env.observation_space.shape[0]
    log_parts = [(key, width, "") for key, width in raw.metadata.get("obs_layout") or []] if raw is not None else []
    env_parts = env.get_wrapper_attr("observation_parts")() if env.has_wrapper_attr("observation_parts") else []
    env_keys = flattened_dict_keys(env)
    if log_parts and env_keys is not None and [key for key, _, _ in log_parts] != list(env_keys):
        raise ConfigError(
            f"the log's observation keys {[key for key, _, _ in log_parts]} are not the env's {list(env_keys)} in "
            "the same order; task.obs_keys sets the order for both"
        )
    parts = log_parts or env_parts
    if sum(width for _, width, _ in parts) != obs_dim:
        parts = [("observation", obs_dim, "")]
    if last_action_dim:
        parts.append(("last_action", last_action_dim, "the action's units (the safety filter's last output)"))
    starts = np.cumsum([0] + [width for _, width, _ in parts])
    return [{"name": n, "start": int(a), "stop": int(a + w), "units": u} for (n, w, u), a in zip(parts, starts)]
