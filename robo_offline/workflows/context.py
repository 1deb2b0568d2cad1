"""What every run derives from its config: device, run directory, dataset, units and algorithm.

Pretraining, fine-tuning and export assemble their runs from here, so a run is built one way.
"""

from __future__ import annotations

import time
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
from robo_offline.data import TransitionDataset, load_dataset
from robo_offline.datagen.builtin import ensure_task_data
from robo_offline.training.calibration import calibration
from robo_offline.training.checkpoint import CheckpointError
from robo_offline.training.rng import seed_everything
from sim.behaviours import PolicyBehaviour
from sim.envs import make_env
from sim.evaluation import evaluate
from sim.wrappers import SafetyFilterWrapper

EVAL_SEED = 10_000  # evaluation seeds start here (plus train.seed), far from the data's and the collectors'


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def new_run_dir(cfg: DictConfig, stage: str = "") -> Path:
    """`cfg.run_dir`, or runs/<task>-<algo>[-<stage>]-<timestamp>."""
    if cfg.run_dir:
        return Path(cfg.run_dir)
    name = "-".join(part for part in (cfg.task.name, cfg.algo.name, stage, time.strftime("%Y%m%d-%H%M%S")) if part)
    return Path("runs") / name


@dataclass
class RunContext:
    """Everything a run derives from its config; shared by pretraining, fine-tuning and export."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    dataset: TransitionDataset | None  # transformed (normalised, scaled) and on device; None online from scratch
    raw_dataset: TransitionDataset | None  # as loaded, on the CPU
    algo: Algorithm
    units: EnvUnits  # env units <-> training units, on `device`

    def env_policy(self) -> EnvPolicy:
        """The algorithm's deterministic policy in environment units (no safety filter: the env wrapper has it)."""
        return EnvPolicy(self.algo.policy(), self.units)

    def safety_wrappers(self) -> list:
        safety = config_lib.to_object(self.cfg).safety
        return [lambda env: SafetyFilterWrapper(env, safety)]

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
            wrappers=self.safety_wrappers(),
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


def build_context(cfg: DictConfig, run_dir: Path, total_steps: int, with_data: bool = True) -> RunContext:
    """Seeded algorithm, set up for `total_steps` updates, and the transformed dataset (`with_data=False`:
    online training from scratch, no dataset)."""
    train = cfg.train
    if train.threads:
        torch.set_num_threads(train.threads)
    seed_everything(train.seed)
    device = resolve_device(train.device)
    env = make_env(cfg.task.env_id)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    raw = load_task_dataset(cfg, env) if with_data else None
    env.close()
    algo = algorithm_class(cfg.algo.name)(config_lib.to_object(cfg).algo, obs_dim, act_dim)
    units = EnvUnits.identity(obs_dim, low, high)
    data = None
    if raw is not None:
        mean, std = raw.observation_stats() if train.normalize_observations else (units.obs_mean, units.obs_std)
        units = EnvUnits(mean, std, low, high, *algo.reward_transform(raw.episode_returns()))
        data = raw.transformed(units).to(device)
    algo.to(device).setup(total_steps, train.grad_clip)
    return RunContext(cfg, run_dir, device, data, raw, algo, units.to(device))
