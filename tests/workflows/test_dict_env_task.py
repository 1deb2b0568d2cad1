"""A goal-conditioned task with a gymnasium Dict observation, end to end: a Dict log recorded from the raw env,
pretraining, online fine-tuning in the env (flattened in the log's key order), export and evaluation."""

from __future__ import annotations

import numpy as np
from builders import write_minari_dict_log
from goal_env import GOAL_ID, record_dict_log

from deploy import load_policy
from robo_offline.cli import main
from robo_offline.workflows.evaluate import evaluate_target

ORDER = ["desired_goal", "achieved_goal", "observation"]  # not the sorted default
TASK = [
    "task=pusher",
    "safety=none",
    f"task.env_id={GOAL_ID}",
    "task.success=goal_env:goal_successes",
    "task.demos.demonstrator=goal_env:GreedyDemonstrator",
    "task.reward=env",
    "task.collect_if_missing=false",
    "task.eval_episodes=3",
    "algo=iql",
    "algo.hidden_dims=[32,32]",
    "train.batch_size=32",
    "train.progress=false",
]


def test_a_dict_env_trains_offline_and_online_in_one_key_order_and_exports_it(tmp_path, capsys):
    log = record_dict_log(tmp_path / "goal-log")
    offline, online = tmp_path / "offline", tmp_path / "online"
    keys = f"task.obs_keys=[{','.join(ORDER)}]"
    steps = ["train.steps=40", "train.eval_every=40", "train.checkpoint_every=40", f"run_dir={offline}"]
    assert main(["pretrain", *TASK, keys, f"task.dataset={log}", *steps]) == 0
    ft = ["finetune.env_steps=40", "finetune.eval_every=40", "finetune.checkpoint_every=40", f"run_dir={online}"]
    assert main(["finetune", str(offline), *ft]) == 0
    assert main(["export", str(online), "--formats", "torchscript"]) == 0
    capsys.readouterr()

    policy = load_policy(online / "export" / "policy.pt")
    layout = [(p["name"], p["start"], p["stop"]) for p in policy.metadata["observation_layout"]]
    assert layout == [("desired_goal", 0, 2), ("achieved_goal", 2, 4), ("observation", 4, 8)]
    run, exported = evaluate_target(online, episodes=3), evaluate_target(online / "export" / "policy.pt", episodes=3)
    np.testing.assert_allclose(run.returns, exported.returns, rtol=1e-5)  # the same flattening on both sides


def test_a_dict_log_whose_keys_are_not_the_envs_is_refused_naming_both(tmp_path, capsys):
    log = write_minari_dict_log(tmp_path / "other-log", np.random.default_rng(0), {"joint": 4, "goal": 4}, 5, act_dim=2)
    args = ["pretrain", *TASK, f"task.dataset={log}", "train.steps=5", f"run_dir={tmp_path}/run"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "['goal', 'joint']" in err and "['achieved_goal', 'desired_goal', 'observation']" in err
