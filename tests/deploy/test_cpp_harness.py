"""The C++ policy_runner reproduces the Python loader's actions, safety-filter state included."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from deploy import EnvUnits, SafetyConfig, export_policy, load_policy
from deploy.cpp_build import build_policy_runner, missing_build_tools

torch.set_num_threads(1)

OBS_DIM, ACT_DIM = 23, 7


@pytest.fixture(scope="module")
def runner() -> Path:
    missing = missing_build_tools()
    if missing:
        pytest.skip(f"C++ harness not built: {missing} not on PATH")
    return build_policy_runner()  # incremental: near-instant once deploy/cpp/build exists


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, pusher_safety: SafetyConfig) -> dict[str, Path]:
    torch.manual_seed(0)
    core = nn.Sequential(nn.Linear(OBS_DIM, 64), nn.Tanh(), nn.Linear(64, ACT_DIM), nn.Tanh())
    return export_policy(
        core,
        EnvUnits(torch.zeros(OBS_DIM), torch.full((OBS_DIM,), 0.5), [-2.0] * ACT_DIM, [2.0] * ACT_DIM),
        safety=pusher_safety,
        metadata={"algorithm": "cpp-harness-test"},
        path=tmp_path_factory.mktemp("cpp") / "policy",
        check_observations=torch.randn(200, OBS_DIM),
    )


@pytest.fixture(scope="module")
def observations() -> torch.Tensor:
    """Random rows with scale changes (rate limiter), joints at limits, and NaN/inf/1e30 rows."""
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(300, OBS_DIM, generator=g) * torch.linspace(0.1, 5.0, 300).unsqueeze(1)
    obs[50, 3], obs[51, 0], obs[52, :] = float("nan"), float("inf"), 1e30
    obs[60:70, 3], obs[60:70, 10] = 0.0, 1.0  # elbow at its upper stop, moving up
    return obs


def write_rows(rows: torch.Tensor, path: Path) -> None:
    path.write_text("".join(" ".join(repr(x) for x in row) + "\n" for row in rows.tolist()))


def python_actions(policy_file: Path, observations: torch.Tensor) -> torch.Tensor:
    policy = load_policy(policy_file)
    policy.reset()
    return torch.stack([policy(obs) for obs in observations])


def parse_actions(text: str) -> torch.Tensor:
    return torch.tensor([[float(x) for x in line.split()] for line in text.splitlines() if line.strip()])


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_cpp_actions_equal_python_loader(runner, exported, observations, tmp_path: Path, fmt: str) -> None:
    obs_file, out_file = tmp_path / "obs.txt", tmp_path / "actions.txt"
    write_rows(observations, obs_file)
    result = subprocess.run(
        [str(runner), str(exported[fmt]), "--obs", str(obs_file), "--out", str(out_file), "--rate-hz", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cpp = parse_actions(out_file.read_text())
    expected = python_actions(exported[fmt], observations)
    assert cpp.shape == expected.shape
    assert torch.isfinite(cpp).all()
    torch.testing.assert_close(cpp, expected, atol=1e-5, rtol=0)
    assert '"algorithm": "cpp-harness-test"' in result.stderr
    latency = re.search(r"latency_us p50=([\d.e+-]+) p99=([\d.e+-]+) max=([\d.e+-]+)", result.stderr)
    assert latency is not None, result.stderr
    assert 0 < float(latency[1]) <= float(latency[2]) <= float(latency[3])


def test_cpp_reads_stdin_and_paces_the_loop(runner, exported, observations) -> None:
    rows = observations[:40]
    text = "".join(" ".join(repr(x) for x in row) + "\n" for row in rows.tolist())
    start = time.monotonic()
    result = subprocess.run(
        [str(runner), str(exported["torchscript"]), "--rate-hz", "400"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start >= 39 / 400  # 40 steps at 400 Hz span at least 39 periods
    torch.testing.assert_close(
        parse_actions(result.stdout), python_actions(exported["torchscript"], rows), atol=1e-5, rtol=0
    )
    assert "overruns:" in result.stderr


def test_cpp_rejects_malformed_observations(runner, exported) -> None:
    result = subprocess.run(
        [str(runner), str(exported["torchscript"])], input="0.1 oops\n", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "bad number 'oops'" in result.stderr
