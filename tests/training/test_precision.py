"""train.precision: auto picks bf16 only where it is native; the choice is saved, kept on resume, bit-exact."""

from __future__ import annotations

import pytest
import torch
from builders import tiny_bc, tiny_bc_sampler

from robo_offline import config as config_lib
from robo_offline.algos import ALGORITHMS
from robo_offline.algos.bc import BC
from robo_offline.training import precision as precision_lib
from robo_offline.training.checkpoint import load_checkpoint
from robo_offline.training.precision import resolve_precision
from robo_offline.training.trainer import PRECISION_FILE, LoopConfig, Trainer

CPU = torch.device("cpu")


@pytest.mark.parametrize("amx, expected", [(False, "fp32"), (True, "bf16")])
def test_auto_picks_bf16_exactly_where_the_cpu_has_amx(monkeypatch, amx, expected):
    monkeypatch.setattr(precision_lib, "cpu_has_amx", lambda: amx)
    chosen = resolve_precision("auto", CPU)
    assert chosen.dtype == expected
    assert ("with AMX" if amx else "without AMX") in chosen.reason


def test_auto_keeps_fp32_for_algorithms_without_measured_bf16_parity(monkeypatch, tmp_path):
    """On an AMX CPU an algorithm not shown to learn the same in bf16 (IQL: Hopper 54 vs 34) stays fp32."""
    monkeypatch.setattr(precision_lib, "cpu_has_amx", lambda: True)
    kept = resolve_precision("auto", CPU, bf16_parity=False)
    assert kept.dtype == "fp32" and "with AMX" in kept.reason
    assert resolve_precision("bf16", CPU, bf16_parity=False).dtype == "bf16"  # an explicit choice is taken as given
    assert not ALGORITHMS["iql"].bf16_parity and ALGORITHMS["cql"].bf16_parity and ALGORITHMS["calql"].bf16_parity
    monkeypatch.setattr(ALGORITHMS["bc"], "bf16_parity", False)
    trainer, _ = _fit(tmp_path, 10, "auto")  # the trainer asks the algorithm (tiny BC here)
    assert trainer.precision.dtype == "fp32"


def test_explicit_precision_is_taken_as_given_and_unknown_ones_refused(monkeypatch):
    monkeypatch.setattr(precision_lib, "cpu_has_amx", lambda: False)
    assert resolve_precision("bf16", CPU).dtype == "bf16"
    assert resolve_precision("fp32", CPU).dtype == "fp32"
    with pytest.raises(ValueError, match="train.precision"):
        resolve_precision("fp16", CPU)
    with pytest.raises(config_lib.ConfigError, match="train.precision"):
        config_lib.compose(["train.precision=fp16"])


def test_networks_return_fp32_under_bf16_autocast():
    """Only the matmuls run in bf16: targets, log-probs and losses are computed from fp32 outputs."""
    from robo_offline.algos.nets import Critic, TanhGaussianActor

    critic, actor = Critic(5, 2, [16]), TanhGaussianActor(5, 2, [16])
    obs, act = torch.randn(8, 5), torch.rand(8, 2) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(obs, act).dtype == torch.float32
        assert critic.many(obs, act.unsqueeze(0)).dtype == torch.float32
        sample, log_prob = actor.sample(obs)
        assert sample.dtype == log_prob.dtype == torch.float32
        assert critic.net.layers[0](torch.randn(2, 8, 7)).dtype == torch.bfloat16  # the matmul itself is bf16


def _fit(run_dir, steps: int, precision: str, resume: bool = False) -> tuple[Trainer, torch.nn.Module]:
    torch.manual_seed(0)
    sample, g = tiny_bc_sampler()
    algo = tiny_bc()
    loop = LoopConfig(steps, 10, 1000, 10, precision=precision, progress=False)
    trainer = Trainer(algo, sample, loop, run_dir, generators={"s": g})
    trainer.fit(start_step=trainer.resume() if resume else 0)
    return trainer, algo


def test_precision_is_saved_and_a_resumed_bf16_run_stays_bit_identical(tmp_path):
    _, uninterrupted = _fit(tmp_path / "a", 30, "bf16")
    trainer, _ = _fit(tmp_path / "b", 20, "bf16")
    assert load_checkpoint(tmp_path / "b" / "checkpoints")["precision"] == "bf16"
    assert (tmp_path / "b" / PRECISION_FILE).read_text().startswith("bf16")
    resumed_trainer, resumed = _fit(tmp_path / "b", 30, "bf16", resume=True)
    assert resumed_trainer.precision.dtype == "bf16"
    for p, q in zip(uninterrupted.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_resume_keeps_the_precision_the_run_trained_in(tmp_path, monkeypatch):
    """A run started in fp32 on a machine without AMX stays fp32 when resumed where auto would pick bf16."""
    monkeypatch.setattr(BC, "bf16_parity", True)  # so that auto would pick bf16 on AMX (whatever BC's own flag)
    monkeypatch.setattr(precision_lib, "cpu_has_amx", lambda: False)
    _fit(tmp_path, 20, "auto")
    assert load_checkpoint(tmp_path / "checkpoints")["precision"] == "fp32"
    monkeypatch.setattr(precision_lib, "cpu_has_amx", lambda: True)
    trainer, _ = _fit(tmp_path, 30, "auto", resume=True)
    assert trainer.precision.dtype == "fp32"
    assert "as the checkpoint was trained" in (tmp_path / PRECISION_FILE).read_text()


def test_saved_runs_with_the_old_bf16_flag_load_as_their_precision(tmp_path):
    for flag, expected in ((True, "bf16"), (False, "fp32")):
        cfg = config_lib.as_dict(config_lib.compose([]))
        cfg["train"].pop("precision")
        cfg["train"]["bf16"] = flag
        path = tmp_path / f"config_{flag}.yaml"
        config_lib.save(config_lib.OmegaConf.create(cfg), path)
        assert config_lib.load_saved(path).train.precision == expected
