"""The `robo-offline` command line as a user meets it: output, exit codes, error messages."""

from __future__ import annotations

import minari
import numpy as np
from builders import d4rl_arrays, write_d4rl

from robo_offline import config as C
from robo_offline.cli import _resume_command, main


def test_inspect_reports_a_d4rl_file(tmp_path, capsys):
    path = write_d4rl(tmp_path / "log.hdf5", d4rl_arrays(np.random.default_rng(0), n=40))
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "d4rl" in out and "40" in out


def test_bad_file_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "not_hdf5.hdf5"
    bad.write_bytes(b"this is not an HDF5 file")
    assert main(["inspect", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_missing_key_exits_2_naming_file_and_key(tmp_path, capsys):
    arrays = d4rl_arrays(np.random.default_rng(0))
    del arrays["rewards"]
    path = write_d4rl(tmp_path / "log.hdf5", arrays)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "rewards" in err


def test_unknown_config_key_exits_2_naming_it(capsys):
    assert main(["pretrain", "train.stepz=3"]) == 2
    assert "train.stepz" in capsys.readouterr().err


def test_collect_writes_a_log_minari_opens(tmp_path, capsys):
    out = tmp_path / "random-log"
    assert (
        main(["collect", "--env", "InvertedPendulum-v5", "--behaviour", "random", "--episodes", "3", "--out", str(out)])
        == 0
    )
    assert "wrote 3 episodes" in capsys.readouterr().out
    dataset = minari.MinariDataset(str(out / "data"))
    assert dataset.total_episodes == 3
    assert main(["inspect", str(out)]) == 0


def test_pretrain_on_a_d4rl_layout_file(tmp_path, capsys):
    # InvertedPendulum-v5: obs 4, act 1 in [-3, 3]; actions in [-1, 1] are inside the bounds.
    path = write_d4rl(tmp_path / "pendulum.hdf5", d4rl_arrays(np.random.default_rng(0), n=200, obs_dim=4, act_dim=1))
    args = [
        "pretrain",
        "algo=iql",
        "safety=none",
        "task.env_id=InvertedPendulum-v5",
        "task.reward=env",
        f"task.dataset={path}",
        "task.collect_if_missing=false",
        "algo.hidden_dims=[16,16]",
        "train.steps=20",
        "train.batch_size=16",
        "train.log_every=10",
        "train.eval_every=20",
        "train.checkpoint_every=20",
        "task.eval_episodes=2",
        "train.progress=false",
        f"run_dir={tmp_path}/run",
    ]
    assert main(args) == 0
    assert "mean_return=" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_missing_dataset_without_collection_exits_2_and_leaves_no_run_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere.hdf5"
    assert main(["pretrain", "task.collect_if_missing=false", f"task.dataset={missing}", "train.progress=false"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_interrupted_stage_names_the_command_that_continues_it(tmp_path):
    for name, source in (("offline", ""), ("online", "runs/offline")):
        cfg = C.compose(["finetune.source=" + source] if source else [])
        (tmp_path / name).mkdir()
        C.save(cfg, tmp_path / name / "config.yaml")
    offline, online = tmp_path / "offline", tmp_path / "online"
    assert _resume_command("main", offline) == f"pretrain --resume {offline}"
    assert _resume_command("main", online) == f"finetune --resume {online}"
    assert _resume_command("tiers", offline) == f"train-online --resume {offline}"
    assert _resume_command("pretrain", offline) == f"pretrain --resume {offline}"
