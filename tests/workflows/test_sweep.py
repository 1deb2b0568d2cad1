"""Sweeps on Ray Tune (a tiny one, locally) and their report: trials are ordinary runs, a failure stays one
trial's, a killed sweep resumes without touching finished trials, and the report's statistics are rliable's."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from builders import tiny_run
from omegaconf import OmegaConf

from robo_offline.config import ConfigError
from robo_offline.training.metrics import read_csv
from robo_offline.workflows.report import find_runs, group_runs, summarize_groups, write_report
from robo_offline.workflows.sweep import SweepSpec, load_spec, run_trial, trial_name

ray = pytest.importorskip("ray")
rliable = pytest.importorskip("rliable")


def _sweep_file(tmp: Path, name: str, steps: int, space: dict, seeds: int = 2, **extra) -> Path:
    overrides = tiny_run(tmp / "demos", algo=("algo=iql",))
    overrides += [f"train.steps={steps}", f"train.eval_every={steps // 2}", "train.checkpoint_every=10"]
    spec = {"name": name, "command": "pretrain", "overrides": overrides, "space": space, "seeds": seeds}
    path = tmp / f"{name}.yaml"
    OmegaConf.save(OmegaConf.create({**spec, "metric": "mean_return", **extra}), path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _final_step(run: Path) -> int:
    import torch

    last = run / "checkpoints" / "last.pt"
    return int(torch.load(last, weights_only=True)["step"]) if last.exists() else -1


def test_a_sweep_file_is_typed_and_validated_naming_the_key(tmp_path):
    path = _sweep_file(tmp_path, "typed", 20, {"algo.expectile": {"grid": [0.7, 0.9]}}, seeds=3)
    spec = load_spec(path)
    assert spec.trial_count() == 6 and trial_name(spec, {"algo.expectile": 0.7, "train.seed": 2}) == (
        "expectile=0.7,seed=2"
    )
    OmegaConf.save(OmegaConf.create({"space": {"algo.beta": {"lognormal": [1, 2]}}}), tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="space.algo.beta"):
        load_spec(tmp_path / "bad.yaml")
    OmegaConf.save(OmegaConf.create({"seedz": 3}), tmp_path / "typo.yaml")
    with pytest.raises(ConfigError, match="seedz"):
        load_spec(tmp_path / "typo.yaml")


def test_a_trial_reports_every_evaluation_as_it_trains(tmp_path):
    spec = load_spec(_sweep_file(tmp_path, "report", 40, {"algo.expectile": {"grid": [0.8]}}))
    rows: list[dict] = []
    run_trial(spec, {"algo.expectile": 0.8, "train.seed": 0}, tmp_path / "sweep", rows.append)
    assert [r["step"] for r in rows] == [20.0, 40.0] and all("mean_return" in r for r in rows)
    run_trial(spec, {"algo.expectile": 0.8, "train.seed": 0}, tmp_path / "sweep", rows.append)  # finished: reports
    assert [r["step"] for r in rows] == [20.0, 40.0, 40.0]


def test_a_seed_batch_trial_trains_its_seeds_together_and_reports_their_mean(tmp_path):
    spec = load_spec(
        _sweep_file(tmp_path, "batched", 40, {"algo.expectile": {"grid": [0.7, 0.8]}}, seeds=2, batch_seeds=True)
    )
    assert spec.trial_count() == 2
    params = {"algo.expectile": 0.8, "train.seed": 0}
    assert trial_name(spec, params) == "expectile=0.8,seeds=0-1"
    rows: list[dict] = []
    run_trial(spec, params, tmp_path / "sweep", rows.append)
    trial = tmp_path / "sweep" / "expectile=0.8,seeds=0-1"
    finals = [read_csv(trial / f"seed_{s}" / "eval.csv")["mean_return"] for s in (0, 1)]
    assert [r["step"] for r in rows] == [20.0, 40.0]
    assert rows[-1]["mean_return"] == pytest.approx((finals[0][-1] + finals[1][-1]) / 2)
    run_trial(spec, params, tmp_path / "sweep", rows.append)  # finished: reports the mean again, trains nothing
    assert len(rows) == 3 and (rows[-1]["step"], rows[-1]["mean_return"]) == (40.0, rows[1]["mean_return"])
    (runs, _) = find_runs([tmp_path / "sweep"])
    assert sorted(r.path.name for r in runs) == ["seed_0", "seed_1"]
    OmegaConf.save(OmegaConf.create({"command": "finetune", "batch_seeds": True}), tmp_path / "ft.yaml")
    with pytest.raises(ConfigError, match="batch_seeds"):
        load_spec(tmp_path / "ft.yaml")


def test_a_finetune_sweep_fine_tunes_the_source_run_once_per_trial(tmp_path):
    from robo_offline import config as C
    from robo_offline.workflows.pretrain import pretrain

    source, _ = pretrain(C.compose(tiny_run(tmp_path / "demos", f"run_dir={tmp_path}/src", algo=("algo=iql",))))
    ft = [f"finetune.source={source.run_dir}", "finetune.env_steps=20", "finetune.eval_every=10"]
    spec = SweepSpec(command="finetune", overrides=ft, space={"algo.beta": {"grid": [1.0, 3.0]}}).validate()
    rows: list[dict] = []
    run_trial(spec, {"algo.beta": 3.0, "train.seed": 0}, tmp_path / "sweep", rows.append)
    run = tmp_path / "sweep" / "beta=3,seed=0"
    cfg = C.load_saved(run / "config.yaml")
    assert cfg.finetune.source == str(source.run_dir) and cfg.algo.beta == 3.0
    assert [r["step"] for r in rows] == [0.0, 10.0, 20.0] and _final_step(run) == 20  # 0: the offline policy
    with pytest.raises(ConfigError, match="finetune.source"):
        SweepSpec(command="finetune").validate()


def test_a_killed_sweep_resumes_the_unfinished_trials_and_leaves_finished_ones_untouched(tmp_path):
    path = _sweep_file(tmp_path, "killed", 300, {"algo.expectile": {"grid": [0.7, 0.9]}}, max_concurrent=1)
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "robo_offline.cli", "sweep", str(path), "--out", str(out)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(_final_step(r) == 300 for r in out.glob("*seed*")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {r.name: _digest(r / "checkpoints" / "last.pt") for r in out.glob("*seed*") if _final_step(r) == 300}
    assert 1 <= len(finished) < 4
    eval_rows = {name: (out / name / "eval.csv").read_text() for name in finished}

    from robo_offline.cli import main

    assert main(["sweep", "--resume", "--out", str(out)]) == 0
    runs = sorted(r.name for r in out.glob("*seed*"))
    assert len(runs) == 4 and all(_final_step(out / r) == 300 for r in runs)
    for name, digest in finished.items():  # not retrained, not rewritten
        assert _digest(out / name / "checkpoints" / "last.pt") == digest
        assert (out / name / "eval.csv").read_text() == eval_rows[name]
    for run in runs:  # resumed trials log each evaluation once
        steps = [line.split(",")[0] for line in (out / run / "eval.csv").read_text().splitlines()[1:]]
        assert steps == ["150", "300"]
    assert (out / "report" / "report.md").read_text().count("algo.expectile=") == 2


def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path, capsys):
    path = _sweep_file(tmp_path, "failing", 20, {"train.batch_size": {"grid": [16, -1]}}, seeds=1)

    from robo_offline.cli import main

    assert main(["sweep", str(path), "--out", str(tmp_path / "sweep")]) == 1
    captured = capsys.readouterr()
    assert "failed trial" in captured.err and "train.batch_size" in captured.err
    assert "1 trial(s) failed" in captured.out
    assert _final_step(tmp_path / "sweep" / "batch_size=16,seed=0") == 20


def _fake_run(path: Path, expectile: float, seed: int, finals: float) -> None:
    path.mkdir(parents=True)
    config = {
        "algo": {"name": "iql", "expectile": expectile},
        "train": {"seed": seed},
        "finetune": {"seed": seed, "source": f"runs/offline-s{seed}"},  # per seed: not the configuration
        "run_dir": str(path),
    }
    OmegaConf.save(OmegaConf.create(config), path / "config.yaml")
    (path / "eval.csv").write_text(f"step,success_rate\n10,0.0\n20,{finals}\n")


def test_the_report_groups_by_configuration_and_its_statistics_are_rliables(tmp_path):
    from rliable import library as rly
    from rliable import metrics

    finals = {0.7: [0.0, 0.1, 0.2, 0.3, 1.0], 0.9: [0.5, 0.6, 0.6, 0.7, 0.9]}
    for expectile, scores in finals.items():
        for seed, score in enumerate(scores):
            _fake_run(tmp_path / "runs" / f"e{expectile}-s{seed}", expectile, seed, score)
    runs, metric = find_runs([tmp_path / "runs"])
    groups = group_runs(runs)
    assert metric == "success_rate" and sorted(groups) == ["algo.expectile=0.7", "algo.expectile=0.9"]
    summary = {s.label: s for s in summarize_groups(groups, reps=500, seed=0)}
    assert summary["algo.expectile=0.7"].iqm == pytest.approx(0.2)  # trims 0.0 and 1.0: mean of 0.1, 0.2, 0.3
    scores = {f"algo.expectile={e}": np.array(v)[:, None] for e, v in finals.items()}  # (seeds, 1 task)
    np.random.seed(0)  # rliable resamples with numpy's global RNG
    points, intervals = rly.get_interval_estimates(
        scores, lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]), reps=500
    )
    for label, s in summary.items():
        np.testing.assert_allclose([s.iqm, s.mean], points[label])
        np.testing.assert_allclose([*s.iqm_ci, *s.mean_ci], intervals[label].T.ravel())
    out, table = write_report([tmp_path / "runs"], reps=200)
    assert {p.name for p in out.iterdir()} == {"report.md", "curves.png", "profile.png"}
    assert "| algo.expectile=0.9 | 5 |" in table


def test_sweep_and_report_without_their_extras_say_what_to_install(monkeypatch, tmp_path):
    import robo_offline.workflows.report as report

    monkeypatch.setitem(sys.modules, "ray", None)
    from robo_offline.workflows.sweep import run_sweep

    with pytest.raises(ConfigError, match=r"pip install 'robo-offline\[sweep\]'"):
        run_sweep(_sweep_file(tmp_path, "noray", 20, {}))
    monkeypatch.setitem(sys.modules, "rliable", None)
    with pytest.raises(ConfigError, match=r"pip install 'robo-offline\[report\]'"):
        report._rliable()


def test_asha_is_switched_on_in_the_sweep_file(tmp_path):
    from ray import tune

    from robo_offline.workflows.sweep import _scheduler

    spec = load_spec(_sweep_file(tmp_path, "asha", 20, {}, asha={"grace_period": 10, "reduction_factor": 2}))
    scheduler = _scheduler(spec, tune)
    assert isinstance(scheduler, tune.schedulers.ASHAScheduler) and scheduler._time_attr == "step"
    assert _scheduler(SweepSpec(), tune) is None
