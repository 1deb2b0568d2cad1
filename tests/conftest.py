"""Fixtures shared across the test tree (the plain builders they use are in builders.py)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from deploy.safety import SafetyConfig
from robo_offline.config import CONFIG_DIR, compose
from sim.envs import make_env
from sim.model_limits import with_model_limits


@pytest.fixture(autouse=True)
def builtin_task_knowledge() -> None:
    """Pusher's and the arm's success tests and demonstrators attached to their env ids, as loading their task
    configs does in a run (sim.tasks.attach_task); before every test, so no test depends on another's config."""
    compose(["task=pusher"])
    compose(["task=arm"])


@pytest.fixture(scope="session")
def pusher_safety() -> SafetyConfig:
    """The built-in Pusher-v5 safety filter (bounds, rate limit, joint-limit lookahead): its YAML completed by the
    model's limits."""
    partial = SafetyConfig.from_dict(
        OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "safety" / "pusher.yaml")), validate=False
    )
    env = make_env("Pusher-v5")
    try:
        return with_model_limits(partial, env)
    finally:
        env.close()
