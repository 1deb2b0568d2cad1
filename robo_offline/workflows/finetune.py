"""Offline-to-online fine-tuning (Cal-QL style) and online training from scratch (SAC).

From an offline run's checkpoint the loop continues in simulation:
- Cal-QL / CQL / SAC checkpoints continue directly with their own update;
- IQL continues with IQL's own update (the baseline), or `finetune.continue_as=calql` converts it;
- BCQ, TD3+BC and BC are converted to Cal-QL: their greedy policy is distilled into Cal-QL's
  tanh-Gaussian actor on the logged observations, and their twin critics (when they have
  compatible ones) are kept, so online training starts from what was learned offline.
Each update's batch mixes offline and online rows (`finetune.online_fraction`), online data is
collected on vector environments through the safety filter, and checkpoints carry the online
buffer so a killed run resumes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from omegaconf import DictConfig, OmegaConf

from robo_offline import config as config_lib
from robo_offline.algos import Algorithm
from robo_offline.algos.convert import convert, converted_config, online_fraction, target_algorithm
from robo_offline.config import ConfigError
from robo_offline.data.replay import MixedSampler, ReplayBuffer
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.collector import OnlineCollector
from robo_offline.training.trainer import LoopConfig, Trainer
from robo_offline.workflows.context import RunContext, build_context, check_units, checkpoint_units, claimed_run_dir
from sim.envs import make_vector_env


def online_run_config(source_dir: Path, overrides: list[str]) -> DictConfig:
    """The source run's config, pointed at the source and with the caller's overrides."""
    cfg = config_lib.load_saved(source_dir / "config.yaml", overrides)
    cfg.finetune.source = str(source_dir)
    cfg.run_dir = "" if not any(o.startswith("run_dir=") for o in overrides) else cfg.run_dir
    return cfg


def finetune(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, dict[str, Any]]:
    """Fine-tune `cfg.finetune.source`'s policy online; resume from a fine-tuning run dir if given."""
    ft = cfg.finetune
    if cfg.train.seeds > 1:
        where = f"{ft.source} is a seed batch; " if ft.source else ""
        raise ConfigError(
            f"{where}train.seeds applies to pretraining only: fine-tune one seed's run at a time "
            "(<run_dir>/seed_<s>), or set train.seeds=1"
        )
    cfg = _with_online_alpha(cfg)
    updates = ft.env_steps * ft.utd_ratio
    ctx = build_context(cfg, total_steps=updates, with_data=bool(ft.source))
    if ft.source and not resume:  # a resumed run's checkpoint already holds the (converted) algorithm
        changed = _load_offline(ctx, Path(ft.source))
        target = target_algorithm(ctx.algo.cfg.name, ft.continue_as)
        if target != ctx.algo.cfg.name:
            carried = {k: getattr(ctx.algo.cfg, k) for k in changed} | _online_alpha(ft) | _reward_of(ctx)
            target_cfg = converted_config(ctx.algo.cfg, target, **carried)
            ctx.algo = convert(ctx.algo, target_cfg, ctx.dataset.observations, ft.distill_steps)
            ctx.algo.setup(updates, cfg.train.grad_clip)
            cfg = _with_algo(cfg, ctx.algo)
    ctx.cfg = cfg
    with claimed_run_dir(cfg, "finetune", resume) as run_dir:
        ctx.run_dir = run_dir
        return ctx, _run_online(ctx, cfg, run_dir, resume)


def _run_online(ctx: RunContext, cfg: DictConfig, run_dir: Path, resume: Path | None) -> dict[str, Any]:
    ft, train = cfg.finetune, cfg.train
    algo = ctx.algo
    envs = make_vector_env(
        cfg.task.env_id,
        ft.num_envs,
        seed=ft.seed,
        wrappers=ctx.env_wrappers(),  # the run's reward, the safety filter, the last-action observation
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    # No more rows than the run can collect: its budget plus room for one unfinished 1000-step episode per env.
    capacity = min(ft.buffer_size, ft.env_steps + 1000 * ft.num_envs)
    buffer = ReplayBuffer(capacity, algo.obs_dim, algo.act_dim, cfg.algo.gamma, ctx.device, ctx.reward_floor)
    collector = OnlineCollector(
        envs, buffer, ctx.units, lambda o: _explore(algo, o, collector.env_steps, ft.random_steps), ctx.device, ft.seed
    )
    generator = torch.Generator(device=ctx.device).manual_seed(train.seed)
    fraction = online_fraction(algo.cfg.name, ft.online_fraction) if ft.source else 1.0
    sampler = MixedSampler(ctx.dataset, buffer, train.batch_size, fraction, generator)
    per_vector_step = ft.num_envs * ft.utd_ratio

    def before_update(step: int) -> dict[str, Any]:
        if (step - 1) % per_vector_step == 0 and collector.env_steps < ft.env_steps:
            collector.step()
        while sampler.n_online == sampler.batch_size and buffer.size < train.batch_size:
            collector.step()  # online-only training waits for a first batch of finished episodes
        return collector.stats()

    def eval_row(step: int) -> dict[str, Any]:
        return {"env_steps": collector.env_steps, **ctx.eval_metrics()}

    def extra_state() -> dict[str, Any]:
        return {**ctx.run_state(), "buffer": buffer.state_dict(), "collector": collector.state_dict()}

    def load_extra_state(state: dict[str, Any]) -> None:
        check_units(checkpoint_units(state, run_dir), ctx.units, run_dir / "checkpoints")
        buffer.load_state_dict(state["buffer"])
        collector.load_state_dict(state["collector"], seed=ft.seed + collector_seed_offset(state["collector"]))

    loop = LoopConfig.from_train(
        train,
        steps=ft.env_steps * ft.utd_ratio,
        eval_every=ft.eval_every * ft.utd_ratio,
        checkpoint_every=ft.checkpoint_every * ft.utd_ratio,
    )
    trainer = Trainer(
        algo,
        sampler,
        loop,
        run_dir,
        evaluate=eval_row,
        extra_state=extra_state,
        generators={"sampler": generator},
        before_update=before_update,
        load_extra_state=load_extra_state,
    )
    start = trainer.resume() if resume else 0  # a bad checkpoint fails here, before anything is written
    config_lib.save(cfg, run_dir / "config.yaml")
    if ft.source and not resume:
        trainer.metrics.log("eval", 0, eval_row(0))  # the offline policy's score: the curve's first point
    try:
        return trainer.fit(start_step=start)
    finally:
        envs.close()


def collector_seed_offset(state: dict[str, Any]) -> int:
    """Episode seeds after a resume whose checkpoint holds no episodes in progress (non-MuJoCo envs)."""
    return 1 + int(state["env_steps"])


def _explore(algo: Algorithm, obs: torch.Tensor, env_steps: int, random_steps: int) -> torch.Tensor:
    """The algorithm's exploration action; uniform random actions for the first `random_steps` transitions."""
    if env_steps < random_steps:
        return torch.rand(obs.shape[0], algo.act_dim, device=obs.device) * 2 - 1
    return algo.explore(obs)


def _load_offline(ctx: RunContext, source_dir: Path) -> list[str]:
    """Weights, optimiser and schedule states and update counter of the offline run; returns the algorithm keys
    the fine-tuning config changed.

    The hand-over makes no step: each learning rate and schedule continues where the offline run left it
    (IQL's cosine climbs back from its end, as CORL's; the paper's fine-tuning config has no decay), unless the
    user set a learning rate or schedule for fine-tuning, which then applies. Architecture and reward-transform
    changes cannot apply to a trained network and are refused, naming the key.
    """
    path = source_dir / "checkpoints"
    state = load_checkpoint(path, ctx.device)
    offline = config_lib.load_saved(source_dir / "config.yaml").algo
    changed = [k for k in ctx.cfg.algo if k in offline and ctx.cfg.algo[k] != offline[k]]
    try:
        ctx.algo.load_training_state(state["algo"])
    except (RuntimeError, KeyError) as err:
        raise ConfigError(
            f"{source_dir}: cannot continue the offline networks with algo keys {changed} changed "
            f"({str(err).splitlines()[0]}); keep the architecture of the offline run"
        ) from None
    check_units(checkpoint_units(state, path), ctx.units, path, changed)
    if any(k.endswith("lr") or k == "actor_schedule" for k in changed):
        ctx.algo.restart_learning_rates()
    return changed


def _reward_of(ctx: RunContext) -> dict[str, float]:
    """The offline run's reward transform, for a converted algorithm whose config has one (CQL family)."""
    return {"reward_scale": float(ctx.units.reward_scale), "reward_bias": float(ctx.units.reward_shift)}


def _online_alpha(ft: DictConfig) -> dict[str, float]:
    return {} if ft.cql_alpha is None else {"cql_alpha": ft.cql_alpha}


def _with_online_alpha(cfg: DictConfig) -> DictConfig:
    """`finetune.cql_alpha` (when set) becomes the conservative weight of an algorithm that has one."""
    if not _online_alpha(cfg.finetune) or "cql_alpha" not in cfg.algo:
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg.algo.cql_alpha = cfg.finetune.cql_alpha
    return cfg


def _with_algo(cfg: DictConfig, algo: Algorithm) -> DictConfig:
    """The run config with its algo section replaced by the (converted) algorithm's config."""
    container = config_lib.as_dict(cfg)
    container["algo"] = OmegaConf.to_container(OmegaConf.structured(algo.cfg))
    schema = config_lib.schema_for(algo.cfg.name)
    return OmegaConf.merge(schema, container)


def train_online(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, dict[str, Any]]:
    """SAC (or any online-capable algorithm) from scratch in simulation: no offline data, no conservatism."""
    cfg = copy.deepcopy(cfg)
    cfg.finetune.source = ""
    return finetune(cfg, resume)
