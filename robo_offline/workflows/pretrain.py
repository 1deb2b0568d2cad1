"""Offline pretraining of one run: config -> dataset -> algorithm -> trainer -> checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from robo_offline import config as config_lib
from robo_offline.training.trainer import LoopConfig, Trainer
from robo_offline.workflows.context import RunContext, build_context, check_units, checkpoint_units, claimed_run_dir


def pretrain(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, dict[str, Any]]:
    """Train `cfg.algo` offline on the task's dataset; resume from `resume` (a run dir) if given."""
    train = cfg.train
    ctx = build_context(cfg, total_steps=train.steps)  # bad data fails here, before a run dir exists
    with claimed_run_dir(cfg, resume=resume) as run_dir:
        ctx.run_dir = run_dir
        generator = torch.Generator(device=ctx.device).manual_seed(train.seed)
        trainer = Trainer(
            ctx.algo,
            sample=lambda: ctx.dataset.sample(train.batch_size, generator),
            cfg=LoopConfig.from_train(train),
            run_dir=run_dir,
            evaluate=(lambda step: ctx.eval_metrics()) if cfg.task.eval_episodes > 0 else None,
            extra_state=ctx.run_state,
            generators={"sampler": generator},
            load_extra_state=lambda state: check_units(checkpoint_units(state, run_dir), ctx.units, run_dir),
        )
        start = trainer.resume() if resume else 0  # a bad checkpoint fails here, before anything is written
        config_lib.save(cfg, run_dir / "config.yaml")
        return ctx, trainer.fit(start_step=start)
