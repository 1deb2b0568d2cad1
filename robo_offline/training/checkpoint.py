"""Checkpoint files: written atomically, so a run killed mid-write keeps its last good one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names the file and what is missing."""


def save_checkpoint(state: dict[str, Any], directory: Path, step: int, keep_every: bool = False) -> Path:
    """Write `last.pt` (and `step_<n>.pt` when keep_every) via a temporary file + rename."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{LAST}.tmp"
    torch.save(state, tmp)
    if keep_every:
        os.link(tmp, directory / f"step_{step:08d}.pt")
    os.replace(tmp, directory / LAST)
    return directory / LAST


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=device, weights_only=False)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
