"""`train.seeds=N`: N seeds pretrained as one batched model, each written as the single run it stands for."""

from __future__ import annotations

import pytest
import torch
from builders import tiny_run

from robo_offline import config as C
from robo_offline.config import ConfigError
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.metrics import read_csv
from robo_offline.workflows.finetune import finetune, online_run_config
from robo_offline.workflows.pretrain import pretrain

# fp32: a batched bf16 matmul rounds differently from N single ones, so seed-for-seed equality is an fp32
# property (train.precision=auto would pick bf16 for Cal-QL on an AMX CPU).
STEPS = [
    "train.steps=4",
    "train.log_every=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.precision=fp32",
]


def _run(tmp, name: str, *extra: str):
    return tiny_run(f"{tmp}/demos", *STEPS, f"run_dir={tmp}/{name}", *extra)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints")["algo"]["modules"]


def _assert_close(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0, msg=f"{what}: {key}")


@pytest.fixture(scope="module")
def batch_and_singles(tmp_path_factory):
    """Seeds 3 and 4 of Cal-QL (the method with the most random draws per update) batched, and alone."""
    tmp = tmp_path_factory.mktemp("seeds")
    pretrain(C.compose(_run(tmp, "batch", "train.seed=3", "train.seeds=2")))
    for seed in (3, 4):
        pretrain(C.compose(_run(tmp, f"single{seed}", f"train.seed={seed}")))
    return tmp


def test_each_seed_of_a_batch_trains_and_is_written_as_its_single_run(batch_and_singles):
    tmp = batch_and_singles
    for seed in (3, 4):
        seed_dir, single = tmp / "batch" / f"seed_{seed}", tmp / f"single{seed}"
        # the same weights after 4 updates, with an evaluation between (it must not disturb any RNG)
        _assert_close(_weights(seed_dir), _weights(single), f"seed {seed}")
        saved = C.load_saved(seed_dir / "config.yaml")
        assert (saved.train.seed, saved.train.seeds, saved.run_dir) == (seed, 1, str(seed_dir))
        for stream in ("train", "eval"):
            got, want = read_csv(seed_dir / f"{stream}.csv"), read_csv(single / f"{stream}.csv")
            assert got["step"] == want["step"] == [2, 4]
            key = "critic_loss" if stream == "train" else "mean_return"
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-4)
        assert (seed_dir / "learning_curves.png").is_file()
    assert C.load_saved(tmp / "batch" / "config.yaml").train.seeds == 2


def test_a_killed_batch_resumes_exactly_and_a_seed_resumes_alone(batch_and_singles, tmp_path):
    tmp = batch_and_singles
    half = C.compose(_run(tmp_path, "batch", "train.seed=3", "train.seeds=2", "train.steps=2"))
    half.task.dataset = f"{tmp}/demos"
    pretrain(half)  # stops at step 2, as a run killed after its checkpoint there
    resumed = C.load_saved(tmp_path / "batch" / "config.yaml", ["train.steps=4"])
    pretrain(resumed, resume=tmp_path / "batch")
    for seed in (3, 4):
        seed_dir = tmp_path / "batch" / f"seed_{seed}"
        want = _weights(tmp / "batch" / f"seed_{seed}")
        got = _weights(seed_dir)
        for key in want:
            assert torch.equal(got[key], want[key]), f"seed {seed}: {key} after the batch's resume"
        assert read_csv(seed_dir / "eval.csv")["step"] == [2, 4]

    # One seed leaves the batch: its run directory, continued as an ordinary single run.
    half = C.compose(_run(tmp_path, "half", "train.seed=3", "train.seeds=2", "train.steps=2"))
    half.task.dataset = f"{tmp}/demos"
    pretrain(half)
    alone = tmp_path / "half" / "seed_4"
    pretrain(C.load_saved(alone / "config.yaml", ["train.steps=4"]), resume=alone)
    _assert_close(_weights(alone), _weights(tmp / "batch" / "seed_4"), "seed 4 resumed alone")


def test_fine_tuning_takes_one_seed_of_a_batch(batch_and_singles):
    source = batch_and_singles / "batch"
    with pytest.raises(ConfigError, match=r"seed batch.*seed_<s>"):
        finetune(online_run_config(source, []))
