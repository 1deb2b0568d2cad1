"""Demo logs the project records itself: the built-in data, so nothing is ever downloaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deploy.safety import SafetyConfig
from robo_offline.data import write_minari_dataset
from sim.behaviours import make_behaviour
from sim.envs import make_env
from sim.episode import Episode
from sim.rollout import rollout_episodes, rollout_transitions
from sim.scores import REFERENCE_RETURNS
from sim.wrappers import SafetyFilterWrapper


def collect_episodes(
    env_id: str,
    behaviour: str,
    episodes: int,
    seed: int = 0,
    quality: str | float = "expert",
    safety: SafetyConfig | None = None,
    policy_path: str | None = None,
    progress: bool = True,
    transitions: int | None = None,
    action_noise: float = 0.0,
) -> list[Episode]:
    """Roll out a behaviour through the safety filter; episodes hold the executed actions.

    `transitions` (when given) replaces the episode count: whole episodes until that many steps.
    """
    env = make_env(env_id, seed=seed)
    env = SafetyFilterWrapper(env, safety or SafetyConfig())
    agent = make_behaviour(
        behaviour, env, quality=quality, seed=seed, policy_path=policy_path, action_noise=action_noise
    )
    desc = {"policy": f"policy:{Path(policy_path).stem if policy_path else ''}", "scripted": f"scripted:{quality}"}.get(
        behaviour, behaviour
    )
    try:
        if transitions is not None:
            return rollout_transitions(env, agent, transitions, seed=seed, progress=progress, desc=desc)
        return rollout_episodes(env, agent, episodes, seed=seed, progress=progress, desc=desc)
    finally:
        env.close()


def write_demo_log(
    path: str | Path,
    episodes: list[Episode],
    env_id: str,
    name: str,
    description: str,
    extra_metadata: dict | None = None,
    if_exists: str = "error",
) -> Path:
    """Write episodes in Minari's layout (with the env's reference scores where known).

    The log is written to a hidden sibling directory and renamed into place at the end, so an interrupted
    write never leaves something that loads as a complete log. `if_exists`: "error", "replace" (tiers
    re-recorded), or "keep" (another process wrote the same built-in log first: keep theirs).
    """
    path = Path(path)
    if path.exists() and if_exists == "error":
        raise FileExistsError(f"{path} already exists; delete it or write the log elsewhere")
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    env = make_env(env_id)
    ref = REFERENCE_RETURNS.get(env_id)
    try:
        write_minari_dataset(
            partial,
            episodes,
            dataset_id=f"robo-offline/{name}-v0",
            env_id=env_id,
            observation_space=env.observation_space,
            action_space=env.action_space,
            algorithm_name="robo-offline collect",
            description=description,
            ref_min_score=ref[0] if ref else None,
            ref_max_score=ref[1] if ref else None,
            extra_metadata=extra_metadata,
        )
        if if_exists == "replace":
            shutil.rmtree(path, ignore_errors=True)
        try:
            partial.rename(path)
        except OSError:
            if not (if_exists == "keep" and path.exists()):
                raise
    finally:
        env.close()
        shutil.rmtree(partial, ignore_errors=True)
    return path.resolve()


def ensure_builtin_demos(task, safety: SafetyConfig | None = None, progress: bool = True) -> Path:
    """Generate the task's built-in demo log at `task.dataset` (mixed qualities) unless it exists."""
    path = Path(task.dataset)
    if path.exists():
        return path
    demos = task.demos
    episodes: list[Episode] = []
    qualities: list[str] = []
    for i, quality in enumerate(demos.qualities):
        batch = collect_episodes(
            task.env_id,
            demos.behaviour,
            demos.episodes_per_quality,
            seed=demos.seed + 100_000 * i,
            quality=quality,
            safety=safety,
            progress=progress,
            action_noise=demos.action_noise,
        )
        episodes += batch
        qualities += [str(quality)] * len(batch)
    meta = {
        "qualities": list(map(str, demos.qualities)),
        "episode_quality": qualities,
        "action_noise": demos.action_noise,
    }
    return write_demo_log(
        path,
        episodes,
        task.env_id,
        f"{task.name}-builtin",
        f"Scripted {task.name} demos, qualities {list(demos.qualities)}",
        meta,
        if_exists="keep",  # parallel runs may record the same built-in log; it is the same log
    )
