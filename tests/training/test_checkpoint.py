"""Checkpoint files that fail clearly: truncated, empty, foreign, newer, malicious; disk full keeps what was written."""

from __future__ import annotations

import errno
import io

import numpy as np
import pytest
import torch
from builders import tiny_bc, tiny_bc_sampler

import robo_offline.training.checkpoint as checkpoint_mod
import robo_offline.training.metrics as metrics_mod
from robo_offline.training.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    StorageError,
    load_checkpoint,
    save_checkpoint,
)
from robo_offline.training.metrics import MetricsLogger
from robo_offline.training.trainer import LoopConfig, Trainer


def _state(step: int = 3) -> dict:
    return {"step": step, "algo": {"w": torch.arange(4.0)}, "rng": {"numpy": np.random.get_state()}}


def _saved(tmp_path, step: int = 3):
    save_checkpoint(_state(step), tmp_path, step)
    return tmp_path / "last.pt"


def test_numpy_state_round_trips_and_plain_weights_only_loading_accepts_the_file(tmp_path):
    state = _state() | {"sim": [np.arange(3, dtype=np.uint32), np.float64(2.5), (np.array([True, False]), None)]}
    save_checkpoint(state, tmp_path, 3)
    torch.load(tmp_path / "last.pt", weights_only=True)  # no allow-list needed: no pickled numpy left
    back = load_checkpoint(tmp_path)
    rng = back["rng"]["numpy"]
    assert rng[0] == "MT19937" and np.array_equal(rng[1], state["rng"]["numpy"][1]) and rng[1].dtype == np.uint32
    assert back["sim"][0].dtype == np.uint32 and back["sim"][1] == 2.5 and back["sim"][2][0].dtype == bool
    np.random.set_state(back["rng"]["numpy"])  # restorable as numpy wants it


def test_a_checkpoint_from_before_the_format_with_pickled_numpy_arrays_still_loads(tmp_path):
    torch.save(_state(), tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["step"] == 3


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(b"not a checkpoint at all" * 10), "not a readable checkpoint"),
        (lambda p: torch.save({"weights": torch.ones(2)}, p), "expected 'step' and 'algo'"),
        (lambda p: torch.save(torch.ones(3), p), "expected 'step' and 'algo'"),
        (lambda p: torch.save({"step": 1, "algo": {}, "format_version": FORMAT_VERSION + 1}, p), "update robo-offline"),
    ],
    ids=["empty", "garbage", "foreign-dict", "foreign-tensor", "newer-format"],
)
def test_unusable_files_fail_with_one_line_naming_the_file(tmp_path, make, expected):
    path = tmp_path / "last.pt"
    make(path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=expected) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before  # nothing overwritten


def test_a_truncated_checkpoint_fails_clearly(tmp_path):
    path = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


def test_a_run_directory_without_a_checkpoint_is_named(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"holds no finished checkpoint") as err:
        load_checkpoint(tmp_path / "run" / "checkpoints")
    assert str(tmp_path / "run") in str(err.value)


class RunsCode:
    """An object whose unpickling runs code (here: creating a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_a_checkpoint_carrying_a_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "algo": {"payload": RunsCode(marker)}}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="Python objects that loading would have to run") as err:
        load_checkpoint(tmp_path)
    assert "exec" in str(err.value)
    assert not marker.exists()


def _disk_full_after(nbytes: int):
    """A stand-in for a write on a full disk: the first `nbytes` land, then ENOSPC."""

    def write(fd_or_file, data, *rest):
        if hasattr(fd_or_file, "write"):  # torch.save's file object
            fd_or_file.write(bytes(data)[:nbytes] if isinstance(data, (bytes, bytearray)) else b"x" * nbytes)
        else:
            checkpoint_mod.os.write(fd_or_file, bytes(data)[:nbytes])
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_disk_full_during_a_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    path = _saved(tmp_path, step=3)
    good = path.read_bytes()
    monkeypatch.setattr(checkpoint_mod.torch, "save", lambda obj, f: _disk_full_after(100)(f, b"x" * 500))
    with pytest.raises(StorageError, match=r"step 4 .*disk full.*last good checkpoint .*last.pt is kept"):
        save_checkpoint(_state(4), tmp_path, 4)
    assert path.read_bytes() == good and load_checkpoint(tmp_path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_disk_full_during_a_metrics_row_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log("train", 10, {"loss": 1.0})
    before = (tmp_path / "train.csv").read_bytes()
    real_write = metrics_mod.os.write

    def full(fd, data):
        real_write(fd, data[:3])  # a torn row on disk ...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(metrics_mod.os, "write", full)
    with pytest.raises(StorageError, match="disk full"):
        logger.log("train", 20, {"loss": 0.5})
    assert (tmp_path / "train.csv").read_bytes() == before  # ... cut back to the last whole row


def test_training_stops_on_a_full_disk_with_its_last_checkpoint_and_metrics_intact(tmp_path, monkeypatch):
    sample, g = tiny_bc_sampler()
    trainer = Trainer(tiny_bc(), sample, LoopConfig(40, 10, 1000, 10, progress=False), tmp_path, generators={"s": g})
    real_save = checkpoint_mod.torch.save

    def save(obj, f):
        if obj["step"] == 30:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(checkpoint_mod.torch, "save", save)
    with pytest.raises(StorageError, match="step 30"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoints")["step"] == 20
    steps = [line.split(",")[0] for line in (tmp_path / "train.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "20", "30"]


def test_resume_drops_metric_rows_logged_after_the_checkpoint(tmp_path):
    sample, g = tiny_bc_sampler()
    Trainer(tiny_bc(), sample, LoopConfig(20, 5, 1000, 10, progress=False), tmp_path, generators={"s": g}).fit()
    with open(tmp_path / "train.csv", "a") as f:
        f.write("25,0.1,1.0\n26,0.")  # rows of a run killed after its checkpoint at 20, the last one torn
    trainer = Trainer(tiny_bc(), sample, LoopConfig(30, 5, 1000, 10, progress=False), tmp_path, generators={"s": g})
    assert trainer.resume() == 20
    steps = [line.split(",")[0] for line in (tmp_path / "train.csv").read_text().splitlines()[1:]]
    assert steps == ["5", "10", "15", "20"]


def test_saving_writes_through_a_temporary_file_that_is_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = checkpoint_mod.os.fsync
    monkeypatch.setattr(checkpoint_mod.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    _saved(tmp_path)
    assert len(synced) == 2  # the file, then its directory (the rename)
    assert torch.load(io.BytesIO((tmp_path / "last.pt").read_bytes()), weights_only=True)["step"] == 3
