"""Demo logs are written whole or not at all: an interrupted `collect` never leaves a log that loads."""

from __future__ import annotations

import numpy as np
import pytest
from builders import PENDULUM, make_episode

import robo_offline.datagen.demos as demos_mod
import robo_offline.workflows.collect as collect_mod
from robo_offline.data import load_dataset
from robo_offline.datagen.demos import write_demo_log
from robo_offline.workflows.collect import collect


def _episodes(n: int = 3):
    rng = np.random.default_rng(0)
    return [make_episode(rng, 5, obs_dim=4, act_dim=1) for _ in range(n)]


def test_an_interrupted_write_leaves_neither_the_log_nor_its_temporary_directory(tmp_path, monkeypatch):
    real_write = demos_mod.write_minari_dataset

    def write_then_interrupted(path, *args, **kwargs):
        real_write(path, *args, **kwargs)  # every file written ...
        raise KeyboardInterrupt  # ... and Ctrl-C before the rename

    monkeypatch.setattr(demos_mod, "write_minari_dataset", write_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_demo_log(tmp_path / "log", _episodes(), PENDULUM, "pendulum-test", "test")
    assert list(tmp_path.iterdir()) == []


def test_a_finished_write_loads_and_an_existing_log_is_never_overwritten(tmp_path, monkeypatch):
    path = write_demo_log(tmp_path / "log", _episodes(), PENDULUM, "pendulum-test", "test")
    assert load_dataset(path).n_transitions == 15
    with pytest.raises(FileExistsError, match="already exists"):
        write_demo_log(tmp_path / "log", _episodes(1), PENDULUM, "pendulum-test", "test")
    assert write_demo_log(tmp_path / "log", _episodes(1), PENDULUM, "pendulum-test", "test", if_exists="keep") == path
    assert load_dataset(path).n_transitions == 15  # a parallel run's log of the same built-in data is kept
    write_demo_log(tmp_path / "log", _episodes(2), PENDULUM, "pendulum-test", "test", if_exists="replace")
    assert load_dataset(path).n_transitions == 10


def test_collect_refuses_an_existing_output_before_any_rollout(tmp_path, monkeypatch):
    (tmp_path / "log").mkdir()
    monkeypatch.setattr(collect_mod, "collect_episodes", lambda *a, **k: pytest.fail("rolled out before checking"))
    with pytest.raises(FileExistsError, match="already exists"):
        collect(PENDULUM, "random", tmp_path / "log", 2)
