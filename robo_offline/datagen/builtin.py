"""A task's built-in data: recorded by the project on first use, so nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.safety import SafetyConfig
from robo_offline.datagen.demos import ensure_builtin_demos
from robo_offline.datagen.tiers import record_tier

# task.demos.behaviour: the env's scripted demonstrator or uniform random actions at each quality
# level, or one D4RL-style tier recorded from shipped behaviour policies.
DEMO_SOURCES = ("scripted", "random", "tiers")


def ensure_task_data(task: Any, safety: SafetyConfig | None = None) -> Path:
    """Record the task's dataset at `task.dataset` from `task.demos` unless it exists; returns the path."""
    path, demos = Path(task.dataset), task.demos
    if path.exists():
        return path
    if demos.behaviour == "tiers":
        return record_tier(demos.tier, Path(demos.policies), path, demos.transitions, demos.seed, safety)
    return ensure_builtin_demos(task, safety)
