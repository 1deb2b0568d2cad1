"""Offline pretraining of one run: config -> dataset -> algorithm -> trainer -> checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from robo_offline import config as config_lib
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.rng import set_rng_state
from robo_offline.training.trainer import LoopConfig, Trainer
from robo_offline.workflows.context import RunContext, build_context, new_run_dir


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
