"""The whole chain on the example model-file task: collect, pretrain, fine-tune, export, evaluate (with a video),
the C++ harness."""

from __future__ import annotations

import subprocess

import imageio.v2 as imageio
import pytest
import torch

from deploy import load_policy
from deploy.cpp_build import build_policy_runner, missing_build_tools
from robo_offline.cli import main
from robo_offline.workflows.evaluate import evaluate_target
from sim.envs import make_env
from sim.model_task import REACH_ARM_ID

TINY = ["algo.hidden_dims=[32,32]", "train.batch_size=32", "train.progress=false", "task.eval_episodes=2"]


def test_collect_pretrain_finetune_export_and_run_in_cpp(tmp_path, capsys):
    log = tmp_path / "arm-demos"
    assert main(["collect", "--env", REACH_ARM_ID, "--episodes", "10", "--quality", "medium", "--out", str(log)]) == 0
    offline = tmp_path / "offline"
    args = ["task=arm", "algo=calql", "algo.n_actions=2", f"task.dataset={log}", "train.steps=40", f"run_dir={offline}"]
    assert main(["pretrain", *args, *TINY, "train.eval_every=40", "train.checkpoint_every=40"]) == 0
    online = tmp_path / "online"
    ft = ["finetune.env_steps=60", "finetune.eval_every=60", "finetune.checkpoint_every=60", f"run_dir={online}"]
    assert main(["finetune", str(offline), *ft]) == 0
    assert main(["export", str(online)]) == 0
    capsys.readouterr()

    policy = load_policy(online / "export" / "policy.pt")
    model = make_env(REACH_ARM_ID).unwrapped.model
    safety = policy.metadata["safety"]
    assert safety["action_low"] == model.actuator_ctrlrange[:, 0].tolist()  # the model's ranges, not a copy
    assert safety["joint_lower"] == model.jnt_range[:3, 0].tolist()
    assert safety["control_period"] == pytest.approx(model.opt.timestep * 5)
    layout = policy.metadata["observation_layout"]  # the file's input, documented part by part
    assert [(p["name"], p["start"], p["stop"]) for p in layout] == [
        ("qpos:shoulder,elbow,wrist", 0, 3),
        ("qvel:shoulder,elbow,wrist", 3, 6),
        ("site:fingertip", 6, 9),
        ("site:goal", 9, 12),
    ]
    assert layout[2]["units"] == "m, world frame"

    # evaluate: the run's policy and its exported files, on the same seeds, give the same returns
    returns = [evaluate_target(t, episodes=3).returns for t in (online, *(online / "export").glob("policy.pt*"))]
    assert len(returns) == 3 and returns[0] == returns[1] == returns[2]
    video = tmp_path / "arm.mp4"
    evaluate_target(online / "export" / "policy.pt", episodes=2, video=video)
    frames = imageio.get_reader(video).count_frames()
    assert frames == 2 * (make_env(REACH_ARM_ID).spec.max_episode_steps + 1)  # each reset and step

    missing = missing_build_tools()
    if missing:
        pytest.skip(f"C++ harness not built: {missing} not on PATH")
    obs = torch.randn(20, policy.metadata["observation_space"]["shape"][0])
    (tmp_path / "obs.txt").write_text("".join(" ".join(repr(x) for x in row) + "\n" for row in obs.tolist()))
    runner = str(build_policy_runner())
    for fmt in ("pt", "pt2"):
        files = [str(online / "export" / f"policy.{fmt}"), "--obs", str(tmp_path / "obs.txt")]
        run = [runner, *files, "--out", str(tmp_path / f"{fmt}.txt"), "--rate-hz", "0"]
        result = subprocess.run(run, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        cpp = torch.tensor(
            [[float(x) for x in line.split()] for line in (tmp_path / f"{fmt}.txt").read_text().split("\n") if line]
        )
        policy.reset()
        torch.testing.assert_close(cpp, torch.stack([policy(o) for o in obs]), atol=1e-5, rtol=0)
