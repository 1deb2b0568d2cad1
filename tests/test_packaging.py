"""The wheel holds everything an installed robo-offline needs, and the installed package works away from
the checkout: configs, behaviour policies and the C++ harness sources are found through the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from deploy.cpp_build import missing_build_tools

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robo_offline", "sim", "deploy")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the files git knows (tracked or not ignored): no stale build/ of the checkout."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("robo_offline-*.whl"))


def test_wheel_holds_every_package_config_policy_and_cpp_source(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:  # pyproject lists packages explicitly: none may be left out
        for init in (ROOT / package).rglob("__init__.py"):
            assert str(init.relative_to(ROOT)) in names, f"{init.parent} is not in the wheel (pyproject packages)"
    for yaml in (ROOT / "configs").rglob("*.yaml"):
        assert f"robo_offline/configs/{yaml.relative_to(ROOT / 'configs')}" in names
    for shipped in [*(ROOT / "sim" / "policies").rglob("*"), *(ROOT / "sim" / "assets").rglob("*")]:
        if shipped.is_file():
            assert str(shipped.relative_to(ROOT)) in names
    assert {"deploy/cpp/CMakeLists.txt", "deploy/cpp/policy_runner.cpp"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "configs/")) or "/build/" in n for n in names)


def _venv_with(wheel: Path, root: Path) -> Path:
    """A fresh venv with the wheel installed (not editable); its dependencies come from this interpreter's
    site-packages through a .pth line, whose own .pth files (this checkout's editable install) are not run."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "robo_offline_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv


def _run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_installed_wheel_runs_away_from_the_checkout(wheel: Path, tmp_path: Path):
    venv = _venv_with(wheel, tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": ""}
    env.pop("ROBO_OFFLINE_CONFIGS", None)
    bin_ = venv / "bin"
    where = _run(
        [
            bin_ / "python",
            "-c",
            "import robo_offline.config as c, sim, deploy; print(c.CONFIG_DIR, sim.__file__, deploy.__file__)",
        ],
        work,
        env,
    )
    assert str(ROOT) not in where and "site-packages" in where  # the installed copy, with its own configs

    tiny = [
        "task.demos.episodes_per_quality=2",
        "task.eval_episodes=2",
        "algo.hidden_dims=[32,32]",
        "train.batch_size=32",
        "train.steps=20",
        "train.log_every=10",
        "train.eval_every=20",
        "train.checkpoint_every=20",
        "train.progress=false",
        "finetune.env_steps=20",
        "finetune.eval_every=20",
        "finetune.checkpoint_every=20",
    ]
    table = _run([bin_ / "robo-offline", "main", "algo.n_actions=2", *tiny], work, env)
    assert "fine-tuned calql" in table and "policy.pt2" in table
    exported = next(work.glob("runs/*-finetune-*/export/policy.pt"))

    out = _run(
        [bin_ / "robo-offline", "pretrain", "task=hopper", "algo=iql", "task.demos.transitions=500", *tiny[1:]],
        work,
        env,
    )
    assert "run directory" in out and (work / "data" / "hopper-medium").is_dir()  # recorded from shipped policies

    if missing_build_tools():
        pytest.skip(f"C++ part: {missing_build_tools()} not on PATH")
    runner = Path(_run([bin_ / "python", "-m", "deploy.cpp_build", "--jobs", "2"], work, env).strip().splitlines()[-1])
    assert runner.is_file() and str(tmp_path / "cache") in str(runner)  # built outside site-packages
    (work / "obs.txt").write_text(" ".join(["0.0"] * 12) + "\n")  # the main job's arm: 12 observed numbers
    _run([runner, exported, "--obs", work / "obs.txt", "--out", work / "actions.txt"], work, env)
    assert len((work / "actions.txt").read_text().split()) == 3  # three joint torques
