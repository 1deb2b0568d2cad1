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
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robo_offline import config as config_lib
from robo_offline.algos import Algorithm, algorithm_class
from robo_offline.data.replay import MixedSampler, ReplayBuffer
from robo_offline.data.returns import compute_mc_returns
from robo_offline.training.collector import OnlineCollector
from robo_offline.workflows.context import RunContext, build_context, checkpoint_units, new_run_dir
from sim.threads import torch_threads
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.rng import set_rng_state
from robo_offline.training.trainer import LoopConfig, Trainer
from sim.behaviours import PolicyBehaviour
from sim.envs import make_env, make_vector_env
from sim.rollout import rollout_episodes
from sim.scores import normalized_score
from sim.wrappers import SafetyFilterWrapper

CONTINUE_AS = {"calql": "calql", "cql": "cql", "sac": "sac", "iql": "iql", "bcq": "calql", "td3bc": "calql", "bc": "calql"}


def target_algorithm(source: str, continue_as: str) -> str:
    return CONTINUE_AS[source] if continue_as == "auto" else continue_as


# -- turning an offline algorithm into the online one ---------------------------------------------
def distill_policy(target: Algorithm, teacher: torch.nn.Module, observations: torch.Tensor, steps: int,
                   batch_size: int = 256, lr: float = 3e-4) -> float:
    """Fit the target's stochastic actor to the teacher's greedy actions by maximum likelihood."""
    opt = torch.optim.Adam(target.actor.parameters(), lr=lr)
    loss = torch.zeros(())
    for _ in range(steps):
        obs = observations[torch.randint(0, len(observations), (batch_size,), device=observations.device)]
        with torch.no_grad():
            act = teacher(obs).clamp(-0.999, 0.999)
        loss = -target.actor.log_prob(obs, act).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def convert(source: Algorithm, target_name: str, ctx: RunContext, steps: int) -> Algorithm:
    """A `target_name` algorithm initialised from `source` (critic copied, actor distilled)."""
    cfg_cls = algorithm_class(target_name).config_class
    target_cfg = cfg_cls(hidden_dims=list(source.cfg.hidden_dims), gamma=source.cfg.gamma)
    target = algorithm_class(target_name)(target_cfg, source.obs_dim, source.act_dim).to(ctx.device)
    critic = getattr(source, "critic", None)
    if critic is not None and critic.state_dict().keys() == target.critic.state_dict().keys() and all(
        a.shape == b.shape for a, b in zip(critic.state_dict().values(), target.critic.state_dict().values())
    ):
        target.critic.load_state_dict(critic.state_dict())
        target.critic_target.load_state_dict(getattr(source, "critic_target", critic).state_dict())
    distill_policy(target, source.policy(), ctx.dataset.observations, steps)
    return target


# -- evaluation with calibration --------------------------------------------------------------------
def evaluate_online(ctx: RunContext, algo: Algorithm, n_episodes: int, seed: int) -> dict[str, Any]:
    """Deterministic-policy episodes through the safety filter: return, success, score, and Q vs MC return."""
    env_id = ctx.cfg.task.env_id
    env = SafetyFilterWrapper(make_env(env_id, seed=seed), config_lib.to_object(ctx.cfg).safety)
    try:
        with torch_threads(1):
            episodes = rollout_episodes(env, PolicyBehaviour(ctx.env_policy().act), n_episodes, seed=seed, progress=False)
    finally:
        env.close()
    returns = np.array([e.total_return for e in episodes])
    success = [e.success for e in episodes if e.success is not None]
    out: dict[str, Any] = {"mean_return": float(returns.mean()), "std_return": float(returns.std()),
                           "success_rate": float(np.mean(success)) if success else None,
                           "normalized_score": normalized_score(env_id, float(returns.mean()))}
    out.update(calibration(ctx, algo, episodes))
    return out


@torch.no_grad()
def calibration(ctx: RunContext, algo: Algorithm, episodes) -> dict[str, float]:
    """Mean Q(s, a) of the evaluation episodes against their discounted MC return (training reward units)."""
    critic = getattr(algo, "critic", None)
    if critic is None:
        return {}
    units = ctx.units.numpy
    obs = np.concatenate([units.obs(e.observations[:-1]) for e in episodes])
    act = np.concatenate([units.action_to_unit(e.actions) for e in episodes])
    # One episode per call: its last step always ends the sum, so no other episode end is marked.
    mc = np.concatenate([compute_mc_returns(units.reward(e.rewards), e.terminations, np.zeros(e.length, dtype=bool),
                                            ctx.cfg.algo.gamma) for e in episodes])
    q = critic(torch.as_tensor(obs, device=ctx.device), torch.as_tensor(act, device=ctx.device)).min(0).values
    return {"q_estimate": float(q.mean()), "mc_return": float(mc.mean())}


# -- the loop ---------------------------------------------------------------------------------------
def online_run_config(source_dir: Path, overrides: list[str]) -> DictConfig:
    """The source run's config, pointed at the source and with the caller's overrides."""
    cfg = config_lib.load_saved(source_dir / "config.yaml", overrides)
    cfg.finetune.source = str(source_dir)
    cfg.run_dir = "" if not any(o.startswith("run_dir=") for o in overrides) else cfg.run_dir
    return cfg


def finetune(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, dict[str, Any]]:
    """Fine-tune `cfg.finetune.source`'s policy online; resume from a fine-tuning run dir if given."""
    ft = cfg.finetune
    run_dir = Path(resume) if resume else new_run_dir(cfg, "finetune")
    run_dir.mkdir(parents=True, exist_ok=True)
    updates = ft.env_steps * ft.utd_ratio
    ctx = build_context(_with_train_steps(cfg, updates), run_dir, with_data=bool(ft.source))
    if ft.source and not resume:  # a resumed run's checkpoint already holds the (converted) algorithm
        _load_offline(ctx, Path(ft.source))
        source_name = ctx.algo.cfg.name
        target = target_algorithm(source_name, ft.continue_as)
        if target != source_name:
            ctx.algo = convert(ctx.algo, target, ctx, ft.distill_steps)
            cfg = _with_algo(cfg, ctx.algo)
    ctx.cfg = cfg
    algo = ctx.algo
    algo.grad_clip, algo.total_steps = cfg.train.grad_clip, updates
    if not algo.optimizers:
        algo.setup()
    algo.end_schedules()  # offline schedules (IQL's cosine to 0) have run their course
    if ft.cql_alpha is not None and hasattr(algo.cfg, "cql_alpha"):
        algo.cfg.cql_alpha = ft.cql_alpha
    config_lib.save(cfg, run_dir / "config.yaml")
    return ctx, _run_online(ctx, cfg, run_dir, resume)


def _run_online(ctx: RunContext, cfg: DictConfig, run_dir: Path, resume: Path | None) -> dict[str, Any]:
    ft, train = cfg.finetune, cfg.train
    algo = ctx.algo
    safety = config_lib.to_object(cfg).safety
    envs = make_vector_env(cfg.task.env_id, ft.num_envs, seed=ft.seed, wrappers=[lambda e: SafetyFilterWrapper(e, safety)],
                           autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    # No more rows than the run can collect: its budget plus room for one unfinished 1000-step episode per env.
    capacity = min(ft.buffer_size, ft.env_steps + 1000 * ft.num_envs)
    buffer = ReplayBuffer(capacity, algo.obs_dim, algo.act_dim, cfg.algo.gamma, ctx.device)
    explore = _explorer(algo, ft.random_steps)
    collector = OnlineCollector(envs, buffer, ctx.units, lambda o: explore(o, collector.env_steps), ctx.device, ft.seed)
    generator = torch.Generator(device=ctx.device).manual_seed(train.seed)
    sampler = MixedSampler(ctx.dataset, buffer, train.batch_size, ft.online_fraction if ft.source else 1.0, generator)
    per_vector_step = ft.num_envs * ft.utd_ratio

    def before_update(step: int) -> dict[str, Any]:
        if (step - 1) % per_vector_step == 0 and collector.env_steps < ft.env_steps:
            collector.step()
        while sampler.n_online == sampler.batch_size and buffer.size < train.batch_size:
            collector.step()  # online-only training waits for a first batch of finished episodes
        return collector.stats()

    def evaluate(step: int) -> dict[str, Any]:
        return {"env_steps": collector.env_steps, **evaluate_online(ctx, algo, cfg.task.eval_episodes, 10_000 + train.seed)}

    def extra_state() -> dict[str, Any]:
        return {**ctx.run_state(), "buffer": buffer.state_dict(), "collector": collector.state_dict()}

    trainer = Trainer(algo, sampler, LoopConfig(ft.env_steps * ft.utd_ratio, train.log_every, ft.eval_every * ft.utd_ratio,
                                                ft.checkpoint_every * ft.utd_ratio, train.bf16, train.progress, train.compile,
                                                train.flush_denormal, train.keep_checkpoints),
                      run_dir, evaluate=evaluate, extra_state=extra_state, generators={"sampler": generator},
                      before_update=before_update)
    start = 0
    if resume:
        state = load_checkpoint(run_dir / "checkpoints", ctx.device)
        algo.load_training_state(state["algo"])
        buffer.load_state_dict(state["buffer"])
        set_rng_state(state["rng"], {"sampler": generator})
        start = state["step"]
        collector.load_state_dict(state["collector"], seed=ft.seed + collector_seed_offset(state["collector"]))
    elif ft.source:
        trainer.metrics.log("eval", 0, evaluate(0))  # the offline policy's score: the curve's first point
    try:
        return trainer.fit(start_step=start)
    finally:
        envs.close()


def collector_seed_offset(state: dict[str, Any]) -> int:
    """Episode seeds after a resume whose checkpoint holds no episodes in progress (non-MuJoCo envs)."""
    return 1 + int(state["env_steps"])


def _explorer(algo: Algorithm, random_steps: int):
    """Stochastic policy samples; uniform random actions for the first `random_steps` transitions."""
    def explore(obs: torch.Tensor, env_steps: int) -> torch.Tensor:
        if env_steps < random_steps or not hasattr(algo, "actor"):
            return torch.rand(obs.shape[0], algo.act_dim, device=obs.device) * 2 - 1
        sample = getattr(algo.actor, "sample", None)
        return sample(obs)[0] if sample is not None else algo.policy()(obs)
    return explore


def _load_offline(ctx: RunContext, source_dir: Path) -> None:
    """Weights and optimiser states of the offline run (its normaliser is the one ctx computed)."""
    state = load_checkpoint(source_dir / "checkpoints", ctx.device)
    ctx.algo.load_state_dict(state["algo"]["modules"])
    ctx.algo.setup()
    for k, opt in ctx.algo.optimizers.items():
        opt.load_state_dict(state["algo"]["optimizers"][k])
    ctx.algo.updates = int(state["algo"].get("updates", 0))
    stored = checkpoint_units(state, source_dir).to(ctx.device)
    if not torch.allclose(stored.obs_mean, ctx.units.obs_mean) or not torch.allclose(stored.obs_std, ctx.units.obs_std):
        raise ValueError(f"{source_dir}: the dataset's normalisation statistics differ from the checkpoint's; "
                         "fine-tune on the dataset the policy was pretrained on")


def _with_train_steps(cfg: DictConfig, steps: int) -> DictConfig:
    cfg = copy.deepcopy(cfg)
    cfg.train.steps = steps
    return cfg


def _with_algo(cfg: DictConfig, algo: Algorithm) -> DictConfig:
    """The run config with its algo section replaced by the (converted) algorithm's config."""
    container = config_lib.as_dict(cfg)
    container["algo"] = OmegaConf.to_container(OmegaConf.structured(algo.cfg))
    schema = config_lib.schema_for(algo.cfg.name)
    return OmegaConf.merge(schema, container)


def train_online(cfg: DictConfig, resume: Path | None = None) -> tuple[RunContext, dict[str, Any]]:
    """SAC (or any online-capable algorithm) from scratch in simulation: no offline data, no conservatism."""
    cfg.finetune.source = ""
    return finetune(cfg, resume)

