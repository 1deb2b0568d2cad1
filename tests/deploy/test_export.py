"""Export round trips: the reloaded file behaves exactly like the eager policy, filter included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import deploy.export
from deploy import EnvUnits, ExportParityError, SafetyConfig, export_policy, load_policy
from deploy.export import build_deployed_policy

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 23, 7
CALLER_METADATA = {"algorithm": "iql", "training_config": {"lr": 3e-4}, "checkpoint_sha256": "ab" * 32}


def small_core(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(OBS_DIM, 32), nn.ReLU(), nn.Linear(32, ACT_DIM), nn.Tanh())


def units() -> EnvUnits:
    g = torch.Generator().manual_seed(1)
    return EnvUnits(
        torch.randn(OBS_DIM, generator=g) * 0.1,
        torch.rand(OBS_DIM, generator=g) + 0.5,
        [-2.0] * ACT_DIM,
        [2.0] * ACT_DIM,
    )


def export_kwargs(tmp_path: Path, safety: SafetyConfig, **overrides) -> dict:
    g = torch.Generator().manual_seed(2)
    kwargs = dict(
        safety=safety,
        metadata=CALLER_METADATA,
        path=tmp_path / "policy",
        check_observations=torch.randn(1000, OBS_DIM, generator=g),
    )
    return {**kwargs, **overrides}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, pusher_safety: SafetyConfig) -> tuple[dict, dict]:
    """Both formats, exported once (the .pt2 compile takes ~20 s)."""
    kwargs = export_kwargs(tmp_path_factory.mktemp("export"), pusher_safety)
    return export_policy(small_core(), units(), **kwargs), kwargs


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_round_trip_carries_metadata_and_matches_eager(exported, fmt: str) -> None:
    files, kwargs = exported
    policy = load_policy(files[fmt])
    meta = policy.metadata
    assert files[fmt].suffix == {"torchscript": ".pt", "pt2": ".pt2"}[fmt]
    assert meta["format"] == fmt and meta["torch_version"] == torch.__version__
    assert {k: meta[k] for k in CALLER_METADATA} == CALLER_METADATA
    assert meta["observation_space"]["shape"] == [OBS_DIM] and meta["action_space"]["shape"] == [ACT_DIM]
    assert meta["action_space"]["low"] == [-2.0] * ACT_DIM
    assert meta["normalizer"]["mean"] == pytest.approx(units().obs_mean.tolist())
    assert SafetyConfig.from_dict(meta["safety"]) == kwargs["safety"]
    assert "package_version" in meta

    eager = build_deployed_policy(small_core(), units(), kwargs["safety"])
    observations = torch.randn(50, OBS_DIM) * 2
    for _ in range(2):  # second pass checks that reset() really restarts the rate limiter
        policy.reset()
        eager.reset()
        with torch.no_grad():
            for obs in observations:
                assert torch.allclose(policy(obs), eager(obs), atol=1e-5, rtol=0)
    assert policy.interventions() == eager.safety.interventions()


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_nan_observation_gives_finite_safe_action(exported, fmt: str) -> None:
    files, kwargs = exported
    policy = load_policy(files[fmt])
    policy.reset()
    first = policy(np.full(OBS_DIM, np.nan))
    assert isinstance(first, np.ndarray) and first.dtype == np.float32
    np.testing.assert_array_equal(first, np.zeros(ACT_DIM, dtype=np.float32))  # safe_action: zero torque
    held = policy(torch.zeros(OBS_DIM))
    again = policy(torch.tensor([0.0] * (OBS_DIM - 1) + [math.inf]))  # goal coordinate, not a joint
    assert torch.isfinite(again).all() and torch.equal(again, held)
    assert policy.interventions()["nonfinite"] == 2


def test_loader_rejects_wrong_observation_shape(exported) -> None:
    files, _ = exported
    with pytest.raises(ValueError, match=r"shape \(23,\)"):
        load_policy(files["torchscript"])(torch.zeros(2, OBS_DIM))


def test_tampered_file_fails_parity_and_is_removed(
    tmp_path: Path, pusher_safety: SafetyConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = deploy.export.load_policy

    def load_tampered(path):
        policy = real_load(path)
        act = policy.act
        policy.act = lambda obs: act(obs) + 1e-3
        return policy

    monkeypatch.setattr(deploy.export, "load_policy", load_tampered)
    kwargs = export_kwargs(tmp_path, pusher_safety)
    with pytest.raises(ExportParityError, match="differs from the eager policy"):
        export_policy(small_core(), units(), **kwargs, formats=["torchscript"])
    assert not (tmp_path / "policy.pt").exists()


def test_bad_units_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="obs_std > 0"):
        EnvUnits(torch.zeros(OBS_DIM), torch.zeros(OBS_DIM), [-2.0] * ACT_DIM, [2.0] * ACT_DIM)
    with pytest.raises(ValueError, match="action_low < action_high"):
        EnvUnits(torch.zeros(OBS_DIM), torch.ones(OBS_DIM), [2.0] * ACT_DIM, [2.0] * ACT_DIM)
    assert not list(tmp_path.iterdir())


def test_unnormalised_policy_exports_with_identity_normaliser(tmp_path: Path, pusher_safety: SafetyConfig) -> None:
    identity = EnvUnits.identity(OBS_DIM, [-2.0] * ACT_DIM, [2.0] * ACT_DIM)
    files = export_policy(small_core(), identity, **export_kwargs(tmp_path, pusher_safety), formats=["torchscript"])
    meta = load_policy(files["torchscript"]).metadata["normalizer"]
    assert meta == {"mean": [0.0] * OBS_DIM, "std": [1.0] * OBS_DIM}


def test_rejects_metadata_that_overwrites_export_fields(tmp_path: Path, pusher_safety: SafetyConfig) -> None:
    with pytest.raises(ValueError, match=r"\['safety'\] are written by export_policy"):
        export_policy(
            small_core(),
            units(),
            **export_kwargs(tmp_path, pusher_safety, metadata={"safety": "mine"}),
            formats=["torchscript"],
        )


class UnscriptableCore(nn.Module):
    """Python-only code (a generator expression over layers) that TorchScript rejects."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(OBS_DIM, 16), nn.Linear(16, ACT_DIM)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = sum(layer.weight.sum() * 0 for layer in self.layers)
        return torch.tanh(zero + self.layers[1](torch.relu(self.layers[0](x))))


def test_core_that_does_not_script_is_traced(tmp_path: Path, pusher_safety: SafetyConfig) -> None:
    files = export_policy(
        UnscriptableCore(), units(), **export_kwargs(tmp_path, pusher_safety), formats=["torchscript"]
    )
    policy = load_policy(files["torchscript"])
    assert policy(torch.zeros(OBS_DIM)).shape == (ACT_DIM,)


class ArgmaxCore(nn.Module):
    """Picks the better of two candidate actions, like BCQ's policy."""

    argmax_over_candidates = True

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Linear(OBS_DIM, 2)
        self.candidates = nn.Parameter(torch.tensor([[0.5] * ACT_DIM, [-0.5] * ACT_DIM]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.candidates[self.score(x).argmax(-1)]


def test_argmax_policies_may_flip_near_ties_with_a_note(tmp_path, pusher_safety, monkeypatch):
    real_load = deploy.export.load_policy

    def one_flip(path):
        policy = real_load(path)
        act, seen = policy.act, {"n": 0}

        def flipped(obs):
            seen["n"] += 1
            return -act(obs) if seen["n"] == 3 else act(obs)  # one observation picks the other candidate

        policy.act = flipped
        return policy

    monkeypatch.setattr(deploy.export, "load_policy", one_flip)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="1 of 1005 check observations"):
        files = export_policy(ArgmaxCore(), units(), **export_kwargs(tmp_path, pusher_safety), formats=["torchscript"])
    assert real_load(files["torchscript"]).metadata["parity"]["argmax_flips"] == 1
    with pytest.raises(ExportParityError):  # a core without the declaration gets no such allowance
        export_policy(small_core(), units(), **export_kwargs(tmp_path, pusher_safety), formats=["torchscript"])
