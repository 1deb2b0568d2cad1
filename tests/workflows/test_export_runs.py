"""`robo-offline export RUN_DIR` for every offline algorithm's run directory, both formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import tiny_run, write_minari_dict_log

from deploy import EnvUnits, load_policy
from robo_offline import config as C
from robo_offline.cli import main as cli_main
from robo_offline.training.checkpoint import CheckpointError
from robo_offline.workflows.context import checkpoint_units
from robo_offline.workflows.export import export_run, load_run_policy
from robo_offline.workflows.pretrain import pretrain

ALGOS = {
    "bc": (),
    "iql": (),
    "cql": ("algo.n_actions=2",),
    "calql": ("algo.n_actions=2",),
    "bcq": ("algo.n_candidates=2", "algo.vae_hidden_dims=[32,32]"),
    "td3bc": (),
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    return tmp_path_factory.mktemp("export_runs")


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_export_run_dir_both_formats_with_parity(demos, algo, capsys):
    overrides = [
        "task.demos.episodes_per_quality=20",
        "task.eval_episodes=0",
        "train.steps=30",
        "train.log_every=10",
        "train.checkpoint_every=30",
        f"run_dir={demos}/{algo}",
    ]
    cfg = C.compose(tiny_run(f"{demos}/data", *overrides, algo=(f"algo={algo}", *ALGOS[algo])))
    ctx, _ = pretrain(cfg)
    capsys.readouterr()  # training's own lines (e.g. its precision); what follows is export's output alone
    assert cli_main(["export", str(ctx.run_dir)]) == 0  # writes, reloads and parity-checks both files
    out = capsys.readouterr().out
    files = {line.split(": ")[0]: line.split(": ")[1] for line in out.strip().splitlines() if ": " in line}
    assert set(files) == {"torchscript", "pt2"}

    algo_obj, state, _ = load_run_policy(ctx.run_dir)
    obs = ctx.raw_dataset.observations[:50]
    units = checkpoint_units(state, ctx.run_dir)
    mean, std, low, high = units.obs_mean, units.obs_std, units.action_low.float(), units.action_high.float()
    with torch.no_grad():  # the formula written out, independently of EnvUnits
        expected = low + (algo_obj.policy()((obs - mean) / std).clamp(-1, 1) + 1) * 0.5 * (high - low)
    for fmt, path in files.items():
        policy = load_policy(path)
        assert policy.metadata["algorithm"] == algo
        np.testing.assert_allclose(policy.metadata["normalizer"]["mean"], mean.numpy(), rtol=1e-6)
        for o, e in zip(obs, expected):  # bounds-only filter (no rate limit): the policy's own action
            policy.reset()
            np.testing.assert_allclose(policy(o.numpy()), e.numpy(), atol=1e-5, err_msg=f"{algo} {fmt}")
        policy.reset()
        assert np.isfinite(policy(np.full(obs.shape[1], np.nan, np.float32))).all()


def test_checkpoints_from_before_env_units_load_and_others_fail_naming_the_field(demos, tmp_path):
    """A pre-EnvUnits checkpoint (normalizer / action_bounds / reward_transform) is converted; one with
    neither layout is refused with the missing entries named."""
    run = demos / "bc"  # written by the parametrised test above
    if not (run / "checkpoints" / "last.pt").is_file():
        pytest.skip("needs the bc run of test_export_run_dir_both_formats_with_parity")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    units = EnvUnits.from_state(state.pop("units"))
    legacy = {
        **state,
        "normalizer": {"mean": units.obs_mean, "std": units.obs_std, "enabled": True},
        "action_bounds": {"low": units.action_low.numpy(), "high": units.action_high.numpy()},
        "reward_transform": {"scale": 1.0, "shift": 0.0},
    }
    torch.save(legacy, tmp_path / "legacy.pt")
    converted = checkpoint_units(torch.load(tmp_path / "legacy.pt", weights_only=False), tmp_path / "legacy.pt")
    for k, v in units.state_dict().items():
        torch.testing.assert_close(converted.state_dict()[k], v, rtol=0, atol=0)
    files = export_run(run, ("torchscript",), tmp_path / "from_legacy", tmp_path / "legacy.pt")
    assert load_policy(files["torchscript"]).metadata["normalizer"]["mean"] == units.obs_mean.tolist()

    del legacy["action_bounds"]
    torch.save(legacy, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"broken\.pt.*no 'units' entry.*missing \['action_bounds'\]"):
        export_run(run, ("torchscript",), tmp_path / "broken", tmp_path / "broken.pt")


def test_a_run_trained_without_observation_normalisation_exports_raw_observations(demos, capsys):
    overrides = ["task.eval_episodes=0", "train.steps=20", "train.normalize_observations=false", f"run_dir={demos}/raw"]
    ctx, _ = pretrain(C.compose(tiny_run(f"{demos}/data", *overrides, algo=("algo=bc",))))
    assert cli_main(["export", str(ctx.run_dir), "--formats", "torchscript"]) == 0
    policy = load_policy(ctx.run_dir / "export" / "policy.pt")
    assert policy.metadata["normalizer"]["mean"] == [0.0] * ctx.algo.obs_dim
    assert policy.metadata["normalizer"]["std"] == [1.0] * ctx.algo.obs_dim
    obs = ctx.raw_dataset.observations[:20]
    units = ctx.units.cpu()
    with torch.no_grad():
        expected = units.action_low + (ctx.algo.cpu().policy()(obs).clamp(-1, 1) + 1) * 0.5 * (
            units.action_high - units.action_low
        )
    for o, e in zip(obs, expected):
        policy.reset()
        np.testing.assert_allclose(policy(o.numpy()), e.numpy(), atol=1e-5)


def test_a_dict_observation_log_names_its_keys_in_the_run_and_the_exported_file(demos, capsys):
    log = write_minari_dict_log(demos / "dict-log", np.random.default_rng(0), {"joint": 3, "goal": 1})
    overrides = ["task.eval_episodes=0", "train.steps=20", "task.collect_if_missing=false", f"run_dir={demos}/dict"]
    cfg = C.compose(tiny_run(log, *overrides, "task.obs_keys=[joint,goal]", algo=("algo=bc",)))
    ctx, _ = pretrain(cfg)  # InvertedPendulum observes 4 numbers: joint (3) + goal (1)
    assert C.load_saved(ctx.run_dir / "config.yaml").task.obs_keys == ["joint", "goal"]  # the order, saved
    assert cli_main(["export", str(ctx.run_dir), "--formats", "torchscript"]) == 0
    layout = load_policy(ctx.run_dir / "export" / "policy.pt").metadata["observation_layout"]
    assert [(p["name"], p["start"], p["stop"]) for p in layout] == [("joint", 0, 3), ("goal", 3, 4)]
