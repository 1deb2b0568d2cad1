"""The shared training loop: non-finite guard, metrics files, checkpoints, exact resume."""

from __future__ import annotations

import csv

import pytest
import torch
from builders import TINY_ACT, TINY_OBS, tiny_bc, tiny_bc_sampler

from robo_offline.algos.bc import BC, BCConfig
from robo_offline.data import Batch
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.trainer import LoopConfig, LossWatch, NonFiniteLossError, Trainer

OBS, ACT = TINY_OBS, TINY_ACT


class ExplodingBC(BC):
    """BC whose loss turns NaN from a given update on (a stand-in for a diverging critic)."""

    def __init__(self, explode_at: int):
        super().__init__(BCConfig(hidden_dims=[8]), OBS, ACT)
        self.explode_at, self.n = explode_at, 0

    def update(self, batch):
        self.n += 1
        out = super().update(batch)
        if self.n >= self.explode_at:
            out["actor_loss"] = out["actor_loss"] * float("nan")
        return out


def test_loop_writes_metrics_checkpoints_and_plot(tmp_path):
    sample, g = tiny_bc_sampler()
    evals = []
    trainer = Trainer(
        tiny_bc(),
        sample,
        LoopConfig(40, 10, 20, 20, progress=False),
        tmp_path,
        evaluate=lambda step: evals.append(step) or {"mean_return": float(step)},
        generators={"s": g},
    )
    trainer.fit()
    assert evals == [20, 40]
    rows = list(csv.DictReader(open(tmp_path / "train.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert all(float(r["actor_loss"]) > 0 for r in rows)
    assert load_checkpoint(tmp_path / "checkpoints")["step"] == 40
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    assert (torch.tensor(2e-39) * 0.5).item() != 0.0  # denormals were flushed only inside the loop


def test_denormals_are_flushed_during_training_only(tmp_path):
    sample, _ = tiny_bc_sampler()
    seen = []
    Trainer(
        tiny_bc(),
        sample,
        LoopConfig(10, 5, 5, 10, progress=False),
        tmp_path,
        evaluate=lambda step: seen.append((torch.tensor(2e-39) * 0.5).item()) or {},
    ).fit()
    assert seen == [0.0, 0.0]
    assert (torch.tensor(2e-39) * 0.5).item() != 0.0


def test_non_finite_loss_stops_naming_loss_and_step_and_keeps_last_good_checkpoint(tmp_path):
    sample, _ = tiny_bc_sampler()
    algo = ExplodingBC(explode_at=27).setup(total_steps=100)
    trainer = Trainer(algo, sample, LoopConfig(100, 10, 1000, 10, progress=False), tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"'actor_loss'.*step 27") as err:
        trainer.fit()
    assert "step_" not in str(err.value) and "last.pt" in str(err.value)
    assert load_checkpoint(tmp_path / "checkpoints")["step"] == 20


def test_the_loss_watch_names_a_loss_that_is_non_finite_in_any_seed_of_a_seed_batch():
    watch = LossWatch(torch.device("cpu"))
    watch.observe(1, {"critic": torch.tensor([1.0, 2.0]), "actor": torch.tensor([0.5, 0.5])})
    watch.check(None)  # all finite
    watch.observe(2, {"critic": torch.tensor([1.0, 2.0]), "actor": torch.tensor([0.5, float("nan")])})
    watch.observe(3, {"critic": torch.tensor([float("inf"), 2.0]), "actor": torch.tensor([0.5, 0.5])})
    with pytest.raises(NonFiniteLossError, match=r"loss 'actor' became non-finite at step 2;"):
        watch.check(None)


def test_resume_gives_bit_identical_next_updates(tmp_path):
    torch.manual_seed(0)
    sample, g = tiny_bc_sampler()
    uninterrupted = tiny_bc()
    Trainer(
        uninterrupted, sample, LoopConfig(30, 10, 1000, 10, progress=False), tmp_path / "a", generators={"s": g}
    ).fit()

    torch.manual_seed(0)
    sample, g = tiny_bc_sampler()
    first = tiny_bc()
    Trainer(first, sample, LoopConfig(20, 10, 1000, 10, progress=False), tmp_path / "b", generators={"s": g}).fit()
    sample, g = tiny_bc_sampler(seed=123)  # a different stream: the checkpoint must restore it
    resumed = tiny_bc()
    extra = []
    trainer = Trainer(
        resumed,
        sample,
        LoopConfig(30, 10, 1000, 10, progress=False),
        tmp_path / "b",
        generators={"s": g},
        load_extra_state=lambda state: extra.append(state["step"]),
    )
    assert trainer.resume() == 20 and extra == [20]
    trainer.fit(start_step=20)
    for p, q in zip(uninterrupted.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))],
)
def test_a_compiled_update_trains_as_the_eager_one(tmp_path, device):
    """`train.compile`: inductor on CPU; on CUDA a CUDA graph ("reduce-overhead"), whose outputs the loop
    consumes before the next replay overwrites them."""
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        sample, g = tiny_bc_sampler()
        algo = tiny_bc().to(device).setup(total_steps=100)
        loop = LoopConfig(30, 10, 1000, 30, progress=False, compile=compiled, precision="fp32")
        Trainer(algo, on(device, sample), loop, tmp_path / f"{compiled}", generators={"s": g}).fit()
        rows = csv.DictReader(open(tmp_path / f"{compiled}" / "train.csv"))
        runs.append((algo, [float(r["actor_loss"]) for r in rows]))
    (eager, eager_losses), (compiled, compiled_losses) = runs
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def on(device: str, sample):
    """`sample`'s batches moved to `device`."""
    return lambda: Batch(*(t.to(device) for t in sample()))
