"""Offline pretraining of one run: config -> dataset -> algorithm -> trainer -> checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from robo_offline import config as config_lib
from robo_offline.algos import Algorithm, algorithm_class
from robo_offline.data import TransitionDataset, load_dataset
from robo_offline.datagen.demos import ensure_builtin_demos
from robo_offline.policy import InferencePolicy
from sim.threads import torch_threads
from robo_offline.datagen.tiers import record_tier
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.rng import seed_everything, set_rng_state
from robo_offline.training.trainer import LoopConfig, Trainer
from sim.envs import make_env
from sim.evaluation import evaluate
from sim.wrappers import SafetyFilterWrapper


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
    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    action_low: np.ndarray
    action_high: np.ndarray
    reward_scale: float
    reward_shift: float

    def inference_policy(self) -> InferencePolicy:
        return InferencePolicy(self.algo.policy(), self.obs_mean, self.obs_std, self.action_low, self.action_high)

    def safety_wrappers(self) -> list:
        safety = config_lib.to_object(self.cfg).safety
        return [lambda env: SafetyFilterWrapper(env, safety)]

    def evaluate(self, step: int | None = None) -> dict[str, Any]:
        task = self.cfg.task
        with torch_threads(1):  # a few observations per call: threads only add overhead
            result = evaluate(self.inference_policy(), task.env_id, n_episodes=task.eval_episodes,
                              seed=10_000 + self.cfg.train.seed, num_envs=task.eval_envs, wrappers=self.safety_wrappers())
        return {k: v for k, v in result.as_dict().items() if k in ("mean_return", "std_return", "success_rate", "normalized_score")}

    def run_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the algorithm to rebuild the deployable policy."""
        return {
            "algo_name": self.cfg.algo.name,
            "obs_dim": self.algo.obs_dim,
            "act_dim": self.algo.act_dim,
            "normalizer": {"mean": self.obs_mean.cpu(), "std": self.obs_std.cpu(), "enabled": bool(self.cfg.train.normalize_observations)},
            "reward_transform": {"scale": self.reward_scale, "shift": self.reward_shift},
            "action_bounds": {"low": self.action_low, "high": self.action_high},
            "env_id": self.cfg.task.env_id,
            "config": config_lib.as_dict(self.cfg),
        }


def load_task_dataset(cfg: DictConfig, env=None) -> TransitionDataset:
    """Load the task's dataset, generating the built-in demos first where the task allows it."""
    task = cfg.task
    if task.collect_if_missing and not Path(task.dataset).exists():
        safety = config_lib.to_object(cfg).safety
        if task.demos.behaviour == "tiers":
            record_tier(task.demos.tier, Path(task.demos.policies), Path(task.dataset), task.demos.transitions,
                        task.demos.seed, safety)
        else:
            ensure_builtin_demos(task, safety)
    env = env or make_env(task.env_id)
    return load_dataset(task.dataset, format=task.format, obs_keys=task.obs_keys, gamma=cfg.algo.gamma,
                        nonfinite=task.nonfinite, observation_space=env.observation_space, action_space=env.action_space)


def build_context(cfg: DictConfig, run_dir: Path, with_data: bool = True) -> RunContext:
    """Seeded algorithm + transformed dataset; `with_data=False` for online training from scratch."""
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
    if raw is not None and train.normalize_observations:
        mean, std = raw.observation_stats()
    else:
        mean, std = torch.zeros(obs_dim), torch.ones(obs_dim)
    algo = algorithm_class(cfg.algo.name)(config_lib.to_object(cfg).algo, obs_dim, act_dim)
    scale, shift, data = 1.0, 0.0, None
    if raw is not None:
        scale, shift = algo.reward_transform(raw.episode_returns())
        data = raw.transformed(obs_mean=mean, obs_std=std, reward_scale=scale, reward_shift=shift,
                               action_low=low, action_high=high).to(device)
    algo.to(device)
    algo.grad_clip = train.grad_clip
    algo.total_steps = train.steps
    algo.setup()
    return RunContext(cfg, run_dir, device, data, raw, algo, mean.to(device), std.to(device), low, high, scale, shift)


def pretrain(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, dict[str, Any]]:
    """Train `cfg.algo` offline on the task's dataset; resume from `resume` (a run dir) if given."""
    run_dir = Path(resume) if resume else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(cfg, run_dir / "config.yaml")
    ctx = build_context(cfg, run_dir)
    train = cfg.train
    generator = torch.Generator(device=ctx.device).manual_seed(train.seed)
    trainer = Trainer(
        ctx.algo,
        sample=lambda: ctx.dataset.sample(train.batch_size, generator),
        cfg=LoopConfig(train.steps, train.log_every, train.eval_every, train.checkpoint_every, train.bf16, train.progress,
                       train.compile, train.flush_denormal, train.keep_checkpoints),
        run_dir=run_dir,
        evaluate=ctx.evaluate if cfg.task.eval_episodes > 0 else None,
        extra_state=ctx.run_state,
        generators={"sampler": generator},
    )
    start = 0
    if resume:
        state = load_checkpoint(run_dir / "checkpoints", ctx.device)
        ctx.algo.load_training_state(state["algo"])
        set_rng_state(state["rng"], {"sampler": generator})
        start = state["step"]
    return ctx, trainer.fit(start_step=start)
