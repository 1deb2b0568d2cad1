"""Fixtures shared across the test tree (the plain builders they use are in builders.py)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from deploy.safety import SafetyConfig
from robo_offline.config import CONFIG_DIR


@pytest.fixture(scope="session")
def pusher_safety() -> SafetyConfig:
    """The built-in Pusher-v5 safety filter (bounds, rate limit, joint-limit lookahead), as its YAML says."""
    return SafetyConfig.from_dict(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "safety" / "pusher.yaml")))
