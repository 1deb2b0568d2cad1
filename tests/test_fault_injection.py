"""Runs that survive people and machines, through the CLI in real processes.

Default suite: SIGTERM then resume, a live run refused, a truncated checkpoint refused without overwriting.
Slow suite (`pytest -m slow tests/test_fault_injection.py -s`): kill -9 at random moments of pretraining and
fine-tuning (many during checkpoint writes), resumed until done and compared bit for bit with uninterrupted
runs; concurrent CLI runs started in the same second. It prints the figures of the closing note.
"""

from __future__ import annotations

import multiprocessing
import random
import shutil
import signal
import time

import pytest
from faults import (
    compare_runs,
    finetune_args,
    kill_and_resume,
    pretrain_args,
    run_cli,
    signal_after_first_checkpoint,
    start_cli,
)

from robo_offline.cli import main
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.run_dir import RunLock

CTX = multiprocessing.get_context("spawn")


def _hold(run_dir, ready, release):
    with RunLock(run_dir):
        ready.set()
        release.wait(60)


def test_sigterm_then_resume_refusals_and_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    proc = signal_after_first_checkpoint(pretrain_args(tmp_path / "demos", run), run, tmp_path, signal.SIGTERM)
    err = proc.stderr.read()
    proc.stdout.close(), proc.stderr.close()
    assert proc.returncode == 143, err
    assert f"continue with: robo-offline pretrain --resume {run}" in err
    stopped_at = load_checkpoint(run / "checkpoints")["step"]
    assert 0 < stopped_at < 300

    ready, release = CTX.Event(), CTX.Event()  # the same run still live in another process: refused
    holder = CTX.Process(target=_hold, args=(run, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert main(["pretrain", "--resume", str(run)]) == 2
        assert f"in use by another run (pid {holder.pid}" in capsys.readouterr().err
    finally:
        release.set()
        holder.join(60)

    last, config = run / "checkpoints" / "last.pt", (run / "config.yaml").read_bytes()
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 3])  # truncated: refused, and nothing is overwritten
    assert main(["pretrain", "--resume", str(run)]) == 2
    assert f"{last} is not a readable checkpoint" in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == config and len(last.read_bytes()) == len(good) // 3

    last.write_bytes(good)
    assert main(["pretrain", "--resume", str(run)]) == 0
    assert load_checkpoint(run / "checkpoints")["step"] == 300


def _trials(kind: str, n: int, tmp_path, seed: int) -> list:
    rng = random.Random(seed)
    data, source = tmp_path / "demos", tmp_path / "source"
    if kind == "pretrain":
        make = lambda run: pretrain_args(data, run)  # noqa: E731
    else:
        if not source.exists():
            assert run_cli(pretrain_args(data, source), tmp_path).returncode == 0
        make = lambda run: finetune_args(source, run)  # noqa: E731
    reference = tmp_path / f"{kind}-reference"
    started = time.monotonic()
    done = run_cli(make(reference), tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    duration = time.monotonic() - started
    trials = []
    for i in range(n):
        run = tmp_path / f"{kind}-{i}"
        trials.append(kill_and_resume(make(run), run, reference, tmp_path, rng, (0.3 * duration, duration)))
        shutil.rmtree(run)
    return trials


@pytest.mark.slow
def test_kill_minus_9_at_random_moments_loses_nothing(tmp_path):
    results = {kind: _trials(kind, 12, tmp_path, seed) for seed, kind in enumerate(("pretrain", "finetune"))}
    print("\n| run | trials | kills | kills in a checkpoint write | resumes | restarts | bit-identical | data lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, trials in results.items():
        print(
            f"| {kind} | {len(trials)} | {sum(t.kills for t in trials)} | {sum(t.kills_in_write for t in trials)} "
            f"| {sum(t.resumes for t in trials)} | {sum(t.restarts for t in trials)} "
            f"| {sum(t.identical for t in trials)} | {sum(bool(t.lost) for t in trials)} |"
        )
    lost = [(kind, t.lost) for kind, trials in results.items() for t in trials if t.lost]
    assert not lost, lost
    assert sum(t.kills for trials in results.values() for t in trials) >= 20


@pytest.mark.slow
def test_cli_runs_started_in_the_same_second_write_separate_directories(tmp_path):
    assert run_cli(pretrain_args(tmp_path / "demos", tmp_path / "warm"), tmp_path).returncode == 0  # demos exist
    args = [a for a in pretrain_args(tmp_path / "demos", tmp_path / "unused") if not a.startswith("run_dir=")]
    procs = [start_cli(args, tmp_path) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1000:] for _, e in outputs]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 3
    for run in runs[1:]:  # three whole runs, each its own: same seed, so the same result in each directory
        assert compare_runs(runs[0], run) == []
