"""Fault injection: run the CLI in a subprocess, kill it (SIGKILL or a signal) at random moments, resume until
it finishes, and compare with a run that was never interrupted.

Plain functions (used by tests/test_fault_injection.py); each trial reports what happened so the slow suite
can print the figures: kills, kills that hit a checkpoint write, resumes, bit-identical endings, data lost.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from builders import tiny_run

from robo_offline.training.checkpoint import load_checkpoint

STEPS, ENV_STEPS = 300, 240


def pretrain_args(data: Path, run_dir: Path) -> list[str]:
    """A few-second IQL run on InvertedPendulum that checkpoints often (so kills land in and between writes)."""
    return [
        "pretrain",
        *tiny_run(
            data,
            f"run_dir={run_dir}",
            f"train.steps={STEPS}",
            "train.checkpoint_every=1",
            "train.log_every=10",
            "train.eval_every=100",
            "train.threads=1",
            algo=("algo=iql",),
        ),
    ]


def finetune_args(source: Path, run_dir: Path) -> list[str]:
    """Cal-QL fine-tuning of `source` online, two envs, checkpointing every 4 env steps."""
    return [
        "finetune",
        str(source),
        f"run_dir={run_dir}",
        f"finetune.env_steps={ENV_STEPS}",
        "finetune.num_envs=2",
        "finetune.eval_every=80",
        "finetune.checkpoint_every=4",
        "train.log_every=20",
        "train.threads=1",
    ]


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "robo_offline.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "robo_offline.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class Trial:
    kills: int = 0
    kills_in_write: int = 0  # a temporary checkpoint file was left behind: the kill hit a write
    resumes: int = 0
    restarts: int = 0  # killed before its first checkpoint: started again from scratch
    identical: bool = False
    lost: list[str] = field(default_factory=list)  # what differs from the uninterrupted run


def kill_and_resume(
    fresh: list[str],
    run_dir: Path,
    reference: Path,
    cwd: Path,
    rng: random.Random,
    window: tuple[float, float],
    max_kills: int = 3,
) -> Trial:
    """Start `fresh`, SIGKILL it after a random delay in `window` (seconds) up to `max_kills` times, resume it
    (`--resume`) until it exits 0, then compare weights and metrics with the `reference` run."""
    trial = Trial()
    resume = [fresh[0], "--resume", str(run_dir)]
    args = fresh
    for _ in range(max_kills):
        proc = start_cli(args, cwd)
        try:
            proc.wait(timeout=rng.uniform(*window))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            trial.kills += 1
            trial.kills_in_write += (run_dir / "checkpoints" / ".last.pt.tmp").exists()
        else:
            if proc.returncode != 0:
                trial.lost.append(f"exit {proc.returncode}: {proc.stderr.read()[-500:]}")
                return trial
            break
        finally:
            proc.stdout.close()
            proc.stderr.close()
        checkpointed = (run_dir / "checkpoints" / "last.pt").is_file()
        trial.resumes += checkpointed
        trial.restarts += not checkpointed
        args = resume if checkpointed else fresh
    else:
        done = run_cli(args, cwd)
        if done.returncode != 0:
            trial.lost.append(f"exit {done.returncode}: {done.stderr[-500:]}")
            return trial
    trial.lost += compare_runs(reference, run_dir)
    trial.identical = not trial.lost
    return trial


def compare_runs(reference: Path, run: Path) -> list[str]:
    """Differences between two runs' final training state (weights, optimisers, RNGs, online buffer and episodes)
    and metric rows (timings excluded)."""
    a, b = load_checkpoint(reference / "checkpoints"), load_checkpoint(run / "checkpoints")
    differences = [f"checkpoint {key}" for key in TRAINING_STATE if not same(a.get(key), b.get(key))]
    for stream in ("train", "eval"):
        rows_a, rows_b = _rows(reference / f"{stream}.csv"), _rows(run / f"{stream}.csv")
        if rows_a != rows_b:
            differences.append(f"{stream}.csv: {len(rows_b)} rows vs {len(rows_a)} (or different values)")
    return differences


TRAINING_STATE = ("step", "algo", "rng", "loop", "buffer", "collector")


def same(a, b) -> bool:
    """Exact equality of nested checkpoint values (tensors bit for bit, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        both = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
        if not both or (a.shape, a.dtype) != (b.shape, b.dtype):
            return False
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "updates_per_s"} for row in csv.DictReader(f)]


def signal_after_first_checkpoint(args: list[str], run_dir: Path, cwd: Path, signum: int) -> subprocess.Popen:
    """Start the CLI and send `signum` once it has written a checkpoint; returns the finished process."""
    proc = start_cli(args, cwd)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    proc.wait(timeout=120)
    return proc
