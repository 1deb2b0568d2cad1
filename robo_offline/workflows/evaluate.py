"""`robo-offline evaluate RUN_DIR | policy.pt[2]`: a run's policy or an exported file in simulation, optionally
rendered to a video.

Both go through the run's reward and safety filter, on the run's evaluation seeds by default, so a run and the
file exported from it give the same returns: the run's policy as its trainer evaluated it (the filter as an env
wrapper, the last executed action appended by `LastActionObservation`), the file as a robot runs it (its own
filter and last action inside; the env's filter wrapper then changes nothing, it only reports).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deploy import load_policy
from deploy.safety import SafetyConfig
from robo_offline import config as config_lib
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.workflows.context import EVAL_SEED, RunContext, build_context, checkpoint_units
from sim.behaviours import PolicyBehaviour
from sim.evaluation import EvalResult, evaluate
from sim.rewards import RelabelReward, resolve_reward
from sim.video import FrameRecorder, write_video
from sim.wrappers import SafetyFilterWrapper

VIDEO_SIZE = 320  # pixels, square


def evaluate_target(
    target: str | Path, episodes: int | None = None, seed: int | None = None, video: str | Path | None = None
) -> EvalResult:
    """Evaluate a run directory or an exported policy file; `video` writes the rendered episodes there."""
    target = Path(target)
    behaviour, env_id, wrappers, cfg = _run(target) if target.is_dir() else _exported(target)
    episodes = episodes or int(cfg["task"]["eval_episodes"]) or 10
    seed = EVAL_SEED + int(cfg["train"]["seed"]) if seed is None else seed
    recorder: list[FrameRecorder] = []
    if video is not None:
        wrappers = [*wrappers, lambda env: recorder.append(FrameRecorder(env)) or recorder[-1]]
    render = {"render_mode": "rgb_array", "width": VIDEO_SIZE, "height": VIDEO_SIZE} if video else {}
    reward = cfg["task"]["reward"]
    result = evaluate(behaviour, env_id, episodes, seed, wrappers, progress=True, env_reward=reward == "env", **render)
    if video is not None:
        env = recorder[0].unwrapped
        write_video(recorder[0].frames, video, fps=env.metadata.get("render_fps", 20))
    return result


def load_trained(run_dir: Path, with_data: bool = False) -> RunContext:
    """A run's context with the weights and units of its last checkpoint (`with_data`: its dataset too)."""
    cfg = config_lib.load_saved(Path(run_dir) / "config.yaml")
    ctx = build_context(cfg, total_steps=1, with_data=with_data)
    state = load_checkpoint(Path(run_dir) / "checkpoints", ctx.device)
    ctx.algo.load_state_dict(state["algo"]["modules"])
    ctx.units = checkpoint_units(state, Path(run_dir) / "checkpoints").to(ctx.device)
    return ctx


def _run(run_dir: Path):
    """The run's deterministic policy from its last checkpoint, with the wrappers its trainer evaluated with."""
    ctx = load_trained(run_dir)
    cfg = ctx.cfg
    return PolicyBehaviour(ctx.env_policy().act), cfg.task.env_id, ctx.env_wrappers(), config_lib.as_dict(cfg)


def _exported(path: Path):
    """An exported file as deployed: its own normaliser, filter and last action; the run's reward around the env."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: neither a run directory nor an exported policy file")
    policy = load_policy(path)
    meta = policy.metadata
    cfg = meta["training_config"]
    config_lib.with_task(config_lib.upgrade_saved(OmegaConf.create(cfg)))  # model file, success, observation order
    reward = resolve_reward(meta.get("reward", "env"), meta["env_id"], cfg["task"].get("reward_floor"))
    relabel = [lambda env: RelabelReward(env, reward)] if reward.relabels else []
    safety = SafetyConfig.from_dict(meta["safety"])
    return PolicyBehaviour(policy), meta["env_id"], [*relabel, lambda env: SafetyFilterWrapper(env, safety)], cfg
