"""`robo-offline collect`: record a demo log (Minari layout) from a behaviour in simulation."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deploy.safety import SafetyConfig
from robo_offline import config as config_lib
from robo_offline.datagen.demos import collect_episodes, write_demo_log
from sim.evaluation import EvalResult, summarize


def collect(
    env_id: str | None,
    behaviour: str,
    out: str | Path,
    episodes: int = 100,
    *,
    transitions: int | None = None,
    quality: str = "expert",
    policy: str | None = None,
    action_noise: float = 0.0,
    seed: int = 0,
    safety_file: str | Path | None = None,
    name: str | None = None,
    task: str | None = None,
) -> tuple[Path, EvalResult]:
    """Roll `behaviour` out through the safety filter of `safety_file` (default: the env's action bounds only)
    and write the log at `out`; returns its path and the episodes' summary.

    The task config (`task`, else the one whose task runs `env_id`, else Pusher's) says what gymnasium does not:
    its scripted demonstrator, success test and Dict-observation order; `env_id` defaults to its env.
    """
    if Path(out).exists():  # before the rollouts, not after
        raise FileExistsError(f"{out} already exists; delete it or choose another --out")
    task = task or (config_lib.task_config_for(env_id) if env_id else "pusher")
    if task is not None:  # composing it attaches its knowledge to the env id
        env_id = config_lib.compose([f"task={task}", *([f"task.env_id={env_id}"] if env_id else [])]).task.env_id
    safety = None
    if safety_file:  # completed from the env's model (bounds, joint limits) when the wrapper is built
        safety = SafetyConfig.from_dict(dict(OmegaConf.to_container(OmegaConf.load(safety_file))), validate=False)
    recorded = collect_episodes(
        env_id,
        behaviour,
        episodes,
        seed=seed,
        quality=quality,
        safety=safety,
        policy_path=policy,
        transitions=transitions,
        action_noise=action_noise,
    )
    name = name or f"{env_id.split('-')[0].lower()}-{behaviour}-{quality}"
    description = f"{behaviour} ({quality}) on {env_id}"
    meta = {"behaviour": behaviour, "quality": str(quality)}
    path = write_demo_log(out, recorded, env_id, name, description, meta)
    return path, summarize(env_id, recorded)
