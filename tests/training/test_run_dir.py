"""A run directory belongs to one run: unique names under concurrency, a lock naming its holder, stale locks."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time

import pytest

import robo_offline.training.run_dir as run_dir_mod
from robo_offline.training.run_dir import RunDirError, RunLock, owned_run_dir, unique_run_dir

CTX = multiprocessing.get_context("spawn")  # a fresh interpreter, like a second terminal


def _claim(parent, stem, start, queue):
    while time.time() < start:  # every process creates its directory in the same instant
        pass
    queue.put(str(unique_run_dir(parent, stem)))


def test_runs_started_in_the_same_second_get_different_directories(tmp_path, monkeypatch):
    queue, start = CTX.Queue(), time.time() + 3.0
    procs = [CTX.Process(target=_claim, args=(tmp_path, "pusher-iql", start, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    dirs = {queue.get(timeout=60) for _ in procs}
    for p in procs:
        p.join()
    assert len(dirs) == 4 and all(os.path.isdir(d) for d in dirs)
    # the exclusive mkdir, not luck, is what separates them: with the suffix forced to collide, it retries
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(run_dir_mod.secrets, "token_hex", lambda n: next(suffixes))
    monkeypatch.setattr(run_dir_mod.time, "strftime", lambda fmt: "20260101-000000")
    assert unique_run_dir(tmp_path, "x").name == "x-20260101-000000-aaaaaa"
    assert unique_run_dir(tmp_path, "x").name == "x-20260101-000000-bbbbbb"


def _hold(run_dir, ready, release):
    with RunLock(run_dir):
        ready.set()
        release.wait(60)


def _hold_and_die(run_dir):
    RunLock(run_dir).acquire()
    os._exit(0)  # like kill -9: no release, the lock file keeps this pid


def test_a_live_run_is_refused_naming_its_holder_and_free_again_when_it_ends(tmp_path):
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {holder.pid} on {socket.gethostname()}"):
            with owned_run_dir(tmp_path, resume=True):
                pass
    finally:
        release.set()
        holder.join(60)
    with owned_run_dir(tmp_path, resume=True) as path:
        assert path == tmp_path


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, capsys):
    dead = CTX.Process(target=_hold_and_die, args=(tmp_path,))
    dead.start()
    dead.join(60)
    lock = RunLock(tmp_path)
    with lock:
        assert lock.took_over["pid"] == dead.pid
    assert f"took over the lock of a run that is gone (pid {dead.pid}" in capsys.readouterr().err


def test_without_flock_the_holders_pid_decides(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir_mod, "fcntl", None)
    dead = CTX.Process(target=_hold_and_die, args=(tmp_path,))
    dead.start()
    dead.join(60)
    with RunLock(tmp_path) as lock:  # its pid is gone: taken over
        assert lock.took_over["pid"] == dead.pid
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):  # this process is alive: refused
            other = RunLock(tmp_path)
            monkeypatch.setattr(run_dir_mod.os, "getpid", lambda: -1)  # ... as seen from another process
            other.acquire()


def test_a_fresh_start_never_overwrites_a_run_and_a_resume_needs_one(tmp_path):
    (tmp_path / "done" / "checkpoints").mkdir(parents=True)
    (tmp_path / "done" / "checkpoints" / "last.pt").write_bytes(b"x")
    with pytest.raises(RunDirError, match="already holds a run .*--resume"):
        with owned_run_dir(tmp_path / "done", resume=False):
            pass
    with pytest.raises(RunDirError, match="does not exist"):
        with owned_run_dir(tmp_path / "missing", resume=True):
            pass


def test_a_fresh_start_clears_metric_rows_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    (tmp_path / "mine.csv").write_text("a user's file\n")
    (tmp_path / "eval.csv").write_text("step,mean_return\n0,1.0\n")
    with owned_run_dir(tmp_path, resume=False):  # no config.yaml: not a run's directory, nothing is touched
        assert (tmp_path / "eval.csv").exists()
    (tmp_path / "config.yaml").write_text("run_dir: x\n")
    with owned_run_dir(tmp_path, resume=False):
        assert not (tmp_path / "eval.csv").exists() and (tmp_path / "mine.csv").exists()
