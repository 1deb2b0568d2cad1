"""Offline pretraining of one run: config -> dataset -> algorithm -> trainer -> checkpoint.

With `train.seeds = N > 1` the N seeds train as one batched model (`algos.seed_batch`) and each is
written as its own run, `<run_dir>/seed_<s>/`, the same as a single run with `train.seed = s`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from robo_offline import config as config_lib
from robo_offline.algos import algorithm_class
from robo_offline.algos.seed_batch import seed_state_dict
from robo_offline.training.run_dir import owned_run_dir, seed_run_dir
from robo_offline.training.seed_batch_trainer import SeedBatchTrainer, SeedRun
from robo_offline.training.trainer import LoopConfig, Trainer
from robo_offline.workflows.context import RunContext, build_context, checks_units, claimed_run_dir, seeds_of


def pretrain(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, Any]:
    """Train `cfg.algo` offline on the task's dataset; resume from `resume` (a run dir) if given. Returns the
    run's context and final evaluation (a list of them, one per seed, for a seed batch)."""
    train = cfg.train
    ctx = build_context(cfg, total_steps=train.steps)  # bad data fails here, before a run dir exists
    with claimed_run_dir(cfg, resume=resume) as run_dir:
        ctx.run_dir = run_dir
        if train.seeds > 1:
            return ctx, _pretrain_seed_batch(ctx, run_dir, resume is not None)
        generator = torch.Generator(device=ctx.device).manual_seed(train.seed)
        trainer = Trainer(
            ctx.algo,
            sample=lambda: ctx.dataset.sample(train.batch_size, generator),
            cfg=LoopConfig.from_train(train),
            run_dir=run_dir,
            evaluate=(lambda step: ctx.eval_metrics()) if cfg.task.eval_episodes > 0 else None,
            extra_state=ctx.run_state,
            generators={"sampler": generator},
            load_extra_state=checks_units(ctx, run_dir),
        )
        start = trainer.resume() if resume else 0  # a bad checkpoint fails here, before anything is written
        config_lib.save(cfg, run_dir / "config.yaml")
        return ctx, trainer.fit(start_step=start)


def seed_run_config(cfg: DictConfig, seed: int, run_dir: Path) -> DictConfig:
    """The config of one seed of a seed batch: the single run it trains as."""
    seed_cfg = copy.deepcopy(cfg)
    seed_cfg.train.seed, seed_cfg.train.seeds, seed_cfg.run_dir = seed, 1, str(run_dir)
    return seed_cfg


def _pretrain_seed_batch(ctx: RunContext, run_dir: Path, resume: bool) -> list[dict[str, Any]]:
    cfg, train = ctx.cfg, ctx.cfg.train
    seeds = seeds_of(cfg)
    with contextlib.ExitStack() as owned:
        dirs = [owned.enter_context(owned_run_dir(seed_run_dir(run_dir, s), resume=resume)) for s in seeds]
        runs = [_seed_run(ctx, i, seed, path) for i, (seed, path) in enumerate(zip(seeds, dirs))]
        trainer = SeedBatchTrainer(
            ctx.algo,
            sample=lambda: ctx.dataset.sample_seeds(train.batch_size, [r.sampler for r in runs]),
            cfg=LoopConfig.from_train(train),
            runs=runs,
        )
        start = trainer.resume() if resume else 0
        config_lib.save(cfg, run_dir / "config.yaml")
        for run in runs:
            config_lib.save(seed_run_config(cfg, run.seed, run.run_dir), run.run_dir / "config.yaml")
        return trainer.fit(start_step=start)


def _seed_run(ctx: RunContext, index: int, seed: int, run_dir: Path) -> SeedRun:
    """Seed `index` of the batch as a run: a single-seed copy of the algorithm, refreshed from the batch before
    each evaluation, gives its policy and its checkpoint's run state."""
    cfg = seed_run_config(ctx.cfg, seed, run_dir)
    algo = algorithm_class(cfg.algo.name)(config_lib.to_object(cfg).algo, ctx.algo.obs_dim, ctx.algo.act_dim)
    view = dataclasses.replace(ctx, cfg=cfg, run_dir=run_dir, algo=algo.to(ctx.device))

    def evaluate(step: int) -> dict[str, Any]:
        view.algo.load_state_dict(seed_state_dict(ctx.algo, index))
        return view.eval_metrics()

    return SeedRun(
        seed=seed,
        run_dir=run_dir,
        sampler=torch.Generator(device=ctx.device).manual_seed(seed),
        evaluate=evaluate if cfg.task.eval_episodes > 0 else None,
        extra_state=view.run_state,
        check_state=checks_units(ctx, run_dir),
    )
