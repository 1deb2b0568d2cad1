"""SIGINT / SIGTERM: a checkpoint of the finished step, a clear exit, and a resume that is bit-identical."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from builders import tiny_bc, tiny_bc_sampler

import robo_offline.training.trainer as trainer_mod
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.interrupt import TrainingInterrupted
from robo_offline.training.trainer import LoopConfig, Trainer

LOOP = LoopConfig(60, 10, 1000, 25, progress=False)  # checkpoints at 25, 50, 60 only


def _trainer(run_dir, signal_at: dict[int, int] | None = None):
    """A tiny BC run; `signal_at` maps a step to the signal this process sends itself before that update."""
    torch.manual_seed(0)
    sample, g = tiny_bc_sampler()

    def before_update(step):
        if signal_at and step in signal_at:
            os.kill(os.getpid(), signal_at[step])

    return Trainer(tiny_bc(), sample, LOOP, run_dir, generators={"s": g}, before_update=before_update)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_current_step_and_the_resume_is_bit_identical(tmp_path, signum):
    straight = _trainer(tmp_path / "straight")
    straight.fit()

    stopped = _trainer(tmp_path / "stopped", {37: signum})
    with pytest.raises(TrainingInterrupted) as err:
        stopped.fit()
    assert err.value.step == 37 and err.value.exit_code == 128 + signum
    assert err.value.run_dir == tmp_path / "stopped"
    assert load_checkpoint(tmp_path / "stopped" / "checkpoints")["step"] == 37  # not 25: no work lost

    resumed = _trainer(tmp_path / "stopped")
    resumed.fit(start_step=resumed.resume())
    for a, b in zip(straight.algo.parameters(), resumed.algo.parameters()):
        assert torch.equal(a, b)
    rows = [(tmp_path / run / "train.csv").read_text().splitlines() for run in ("straight", "stopped")]
    strip = [[line.rsplit(",", 1)[0] for line in r] for r in rows]  # the last column is updates_per_s
    assert strip[0] == strip[1]  # the log row at 40 averages the same 10 losses across the stop


def test_a_second_ctrl_c_during_the_checkpoint_write_does_not_corrupt_it(tmp_path, monkeypatch, capsys):
    real_save = trainer_mod.save_checkpoint

    def save_while_interrupted(state, directory, step, keep_every=False):
        if step == 37:
            os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C
        return real_save(state, directory, step, keep_every)

    monkeypatch.setattr(trainer_mod, "save_checkpoint", save_while_interrupted)
    with pytest.raises(TrainingInterrupted):
        _trainer(tmp_path, {37: signal.SIGINT}).fit()
    assert load_checkpoint(tmp_path / "checkpoints")["step"] == 37
    assert "already stopping" in capsys.readouterr().err


def test_handlers_are_restored_after_training(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    _trainer(tmp_path).fit()
    assert signal.getsignal(signal.SIGTERM) is before
