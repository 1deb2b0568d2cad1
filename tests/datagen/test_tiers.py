"""D4RL-style tiers: picking medium/expert, exporting SAC snapshots, recording each tier, noisy behaviours."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from robo_offline import config as C
from robo_offline.cli import main as cli
from robo_offline.data import load_dataset
from robo_offline.datagen.tiers import Manifest, Snapshot, pick_tiers, record_tier
from robo_offline.workflows.behaviours import train_behaviours
from robo_offline.workflows.context import load_task_dataset
from sim.behaviours import NoisyBehaviour, PolicyBehaviour, make_behaviour
from sim.envs import make_env
from sim.rollout import rollout_transitions

TINY_SAC = [
    "algo.hidden_dims=[32,32]",
    "train.batch_size=32",
    "finetune.random_steps=50",
    "task.eval_episodes=1",
    "train.log_every=50",
    "train.progress=false",
]


def _snap(steps, score):
    return Snapshot(f"step_{steps:08d}.pt", steps, score * 10, score)


def test_medium_is_the_first_snapshot_at_a_third_of_the_best_and_expert_the_best():
    snaps = [_snap(10, 5.0), _snap(20, 31.0), _snap(30, 40.0), _snap(40, 25.0), _snap(50, 96.0), _snap(60, 90.0)]
    medium, expert = pick_tiers(snaps)
    assert (medium.env_steps, expert.env_steps) == (30, 50)  # 31 < 96 / 3 = 32 <= 40


def test_manifest_round_trip_and_replay_sources(tmp_path):
    snaps = [_snap(10, 5.0), _snap(20, 40.0), _snap(30, 120.0)]
    Manifest("Hopper-v5", snaps, snaps[1].file, snaps[2].file).save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded.snapshots == snaps and loaded.medium == snaps[1].file
    assert [s.env_steps for s in loaded.replay_snapshots()] == [10, 20]


def test_missing_manifest_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        Manifest.load(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiers")
    manifest = train_behaviours(
        "hopper", tmp / "policies", env_steps=300, snapshot_every=100, overrides=TINY_SAC, run_dir=tmp / "sac"
    )
    return tmp, manifest


def test_snapshots_are_exported_with_a_manifest(policies):
    tmp, manifest = policies
    saved = json.loads((tmp / "policies" / "manifest.json").read_text())
    assert saved["env_id"] == "Hopper-v5" and [s["env_steps"] for s in saved["snapshots"]]
    for snap in manifest.snapshots:  # every listed snapshot is a loadable exported policy
        assert (tmp / "policies" / snap.file).is_file()
    assert {manifest.medium, manifest.expert} <= {s.file for s in manifest.snapshots}
    evaluated = {s.env_steps for s in manifest.snapshots}
    assert len(evaluated) == len(manifest.snapshots)


@pytest.mark.parametrize("tier", ["random", "medium", "medium-replay", "expert"])
def test_each_tier_is_a_loadable_log_of_whole_episodes(policies, tier):
    tmp, manifest = policies
    out = record_tier(tier, tmp / "policies", tmp / f"hopper-{tier}", transitions=150, seed=3, progress=False)
    data = load_dataset(out)
    assert data.n_transitions >= 150
    assert data.metadata["file_metadata"]["tier"] == tier
    sources = 1 + len(manifest.replay_snapshots())  # medium-replay: random, then each snapshot up to medium
    assert data.n_episodes >= (sources if tier == "medium-replay" else 1)


def test_a_missing_tier_is_recorded_from_the_shipped_style_policies(policies):
    tmp, _ = policies
    cfg = C.compose(
        [
            "task=hopper",
            "task.demos.tier=expert",
            f"task.demos.policies={tmp / 'policies'}",
            "task.demos.transitions=120",
            "algo=iql",
        ]
    )
    cfg.task.dataset = str(tmp / "auto-expert")
    data = load_task_dataset(cfg)
    assert data.n_transitions >= 120 and (tmp / "auto-expert").exists()


def test_hopper_task_dataset_follows_the_tier():
    cfg = C.compose(["task=hopper", "task.demos.tier=medium-replay"])
    assert cfg.task.dataset == "data/hopper-medium-replay"
    with pytest.raises(C.ConfigError, match="task.demos.tier"):
        C.compose(["task=hopper", "task.demos.tier=amateur"])


# -- behaviours and rollouts ------------------------------------------------------------------------
def test_noisy_behaviour_is_seeded_bounded_and_of_the_requested_scale():
    space = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)
    noisy = NoisyBehaviour(PolicyBehaviour(lambda obs: np.zeros(3, np.float32)), space, std=0.25)
    noisy.reset(7)
    a = np.stack([noisy(None) for _ in range(4000)])
    noisy.reset(7)
    assert np.array_equal(a[0], noisy(None))
    assert a.min() >= -2.0 and a.max() <= 2.0
    assert abs(a.std() - 0.25 * 2.0) < 0.03  # std in half-ranges: 0.25 * (2 - -2) / 2


def test_zero_noise_leaves_the_behaviour_unwrapped_and_negative_noise_is_refused():
    env = make_env("Hopper-v5")
    assert not isinstance(make_behaviour("random", env, seed=0), NoisyBehaviour)
    with pytest.raises(ValueError, match="action_noise"):
        make_behaviour("random", env, seed=0, action_noise=-0.1)
    env.close()


def test_rollout_transitions_keeps_whole_episodes_and_stops_after_the_budget():
    env = make_env("Hopper-v5")
    episodes = rollout_transitions(env, make_behaviour("random", env, seed=0), 200, seed=0, progress=False)
    env.close()
    lengths = [e.length for e in episodes]
    assert sum(lengths) >= 200 and sum(lengths[:-1]) < 200
    assert episodes[-1].terminations[-1] or episodes[-1].truncations[-1]


def test_collect_cli_records_noisy_transitions(tmp_path, capsys):
    assert (
        cli(
            [
                "collect",
                "--env",
                "Hopper-v5",
                "--behaviour",
                "random",
                "--transitions",
                "120",
                "--action-noise",
                "0.1",
                "--out",
                str(tmp_path / "log"),
            ]
        )
        == 0
    )
    assert load_dataset(tmp_path / "log").n_transitions >= 120


def test_tiers_cli_records_from_a_policy_directory(policies, tmp_path, capsys):
    tmp, manifest = policies
    assert (
        cli(
            [
                "tiers",
                "--policies",
                str(tmp / "policies"),
                "--tiers",
                "random",
                "expert",
                "--transitions",
                "100",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert manifest.expert in out and "medium policy" in out
    assert load_dataset(tmp_path / "hopper-expert").n_transitions >= 100 and (tmp_path / "hopper-random").exists()


def test_tiers_cli_without_policies_exits_2_naming_the_manifest(tmp_path, capsys):
    assert cli(["tiers", "--policies", str(tmp_path / "none")]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_shipped_hopper_policies_match_their_manifest():
    from deploy import load_policy
    from robo_offline.datagen.tiers import SHIPPED_POLICIES, resolve_policies

    directory = resolve_policies("hopper")  # found through the package, from any working directory
    assert directory == SHIPPED_POLICIES / "hopper" == resolve_policies("sim/policies/hopper").resolve()
    manifest = Manifest.load(directory)
    assert manifest.env_id == "Hopper-v5"
    medium, expert = pick_tiers(manifest.snapshots)  # the recorded choice follows the documented rule
    assert (medium.file, expert.file) == (manifest.medium, manifest.expert)
    assert expert.normalized_score > 2 * medium.normalized_score
    policy = load_policy(directory / manifest.expert)
    assert policy.metadata["env_id"] == "Hopper-v5"
    action = policy(np.zeros(11, np.float32))
    assert action.shape == (3,) and np.all(np.abs(action) <= 1.0)
