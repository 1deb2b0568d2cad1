"""Config composition: groups, files, overrides, typed validation, round trip."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from robo_offline import config as C
from robo_offline.algos import ALGORITHMS
from sim.envs import make_env


def test_groups_and_overrides_compose_onto_typed_schema():
    cfg = C.compose(["task=pusher", "algo=bc", "train.steps=123", "algo.lr=0.5"])
    assert cfg.task.env_id == "Pusher-v5"
    assert cfg.train.steps == 123 and isinstance(cfg.train.steps, int)
    assert cfg.algo.name == "bc" and cfg.algo.lr == 0.5
    obj = C.to_object(cfg)
    assert type(obj.algo).__name__ == "BCConfig"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.stepz=5", "train.stepz"),
        ("algo.not_a_field=1", "algo.not_a_field"),
        ("train.steps=many", "train.steps"),
        ("train.steps=0", "train.steps"),
        ("task.nonfinite=ignore", "task.nonfinite"),
        ("algo.gamma=1.5", "algo.gamma"),
    ],
)
def test_bad_overrides_are_rejected_naming_the_key(override, fragment):
    with pytest.raises(C.ConfigError, match=fragment.replace(".", r"\.")):
        C.compose([override])


def test_unknown_group_lists_the_options():
    with pytest.raises(C.ConfigError, match="available"):
        C.compose(["algo=nope"])


def test_override_without_equals_is_rejected():
    with pytest.raises(C.ConfigError, match="key=value"):
        C.compose(["train.steps"])


def test_user_file_layers_and_selects_its_algorithm(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("algo:\n  name: bc\n  lr: 0.25\ntrain:\n  batch_size: 64\n")
    cfg = C.compose(["train.steps=7"], [f])
    assert cfg.algo.lr == 0.25 and cfg.train.batch_size == 64 and cfg.train.steps == 7


def test_unknown_key_in_user_file_is_rejected(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  learning_rate: 1\n")
    with pytest.raises(C.ConfigError, match="learning_rate"):
        C.compose([], [f])


def test_saved_config_reloads_identically(tmp_path):
    cfg = C.compose(["train.steps=42", "algo.lr=0.01"])
    C.save(cfg, tmp_path / "config.yaml")
    again = C.load_saved(tmp_path / "config.yaml")
    assert C.as_dict(again) == C.as_dict(cfg)
    assert C.load_saved(tmp_path / "config.yaml", ["train.steps=43"]).train.steps == 43


def test_a_saved_config_with_a_removed_key_still_loads(tmp_path):
    """Runs saved before a key was removed (task.eval_envs) can still be resumed and exported."""
    cfg = C.compose(["train.steps=42"])
    old = C.as_dict(cfg)
    old["task"]["eval_envs"] = 2
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    assert C.as_dict(C.load_saved(tmp_path / "config.yaml")) == C.as_dict(cfg)
    with pytest.raises(C.ConfigError, match="eval_envs"):  # new configs may not use it
        C.compose(["task.eval_envs=2"])


def test_user_config_dirs_come_first_and_add_groups(tmp_path, monkeypatch):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "myrobot.yaml").write_text("task:\n  name: myrobot\n  env_id: Hopper-v5\n")
    monkeypatch.setattr(C, "USER_CONFIG_DIRS", [tmp_path])
    assert C.compose(["task=myrobot"]).task.env_id == "Hopper-v5"
    assert C.compose(["task=pusher"]).task.env_id == "Pusher-v5"  # built-in groups stay available
    with pytest.raises(C.ConfigError, match=str(tmp_path / "task")):
        C.compose(["task=nowhere"])


def test_inconsistent_safety_config_is_rejected_at_load():
    with pytest.raises(C.ConfigError, match="safety"):
        C.compose(["safety.action_low=[1.0]", "safety.action_high=[-1.0]"])


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algorithm_yaml_selects_its_dataclass_defaults(name):
    """configs/algo/<name>.yaml holds no second copy of the defaults: composing it gives the dataclass."""
    assert (C.CONFIG_DIR / "algo" / f"{name}.yaml").is_file()
    composed = C.compose(["task=pusher", f"algo={name}"]).algo
    assert OmegaConf.to_container(composed) == OmegaConf.to_container(
        OmegaConf.structured(ALGORITHMS[name].config_class())
    )


def test_a_task_config_naming_a_model_file_registers_that_task():
    model = ["task.name=myarm", "task.model.file=reach_arm.xml", "task.model.max_episode_steps=30"]
    sites = ["task.model.observations=[qpos,qvel,site:fingertip,site:goal]"]
    sites.append("task.model.success_sites=[fingertip,goal]")
    cfg = C.compose(["task=arm", *model, *sites])
    assert cfg.task.env_id == "robo_offline/myarm-v0"
    env = make_env(cfg.task.env_id)
    assert env.observation_space.shape == (5 + 5 + 3 + 3,) and env.spec.max_episode_steps == 30
    with pytest.raises(C.ConfigError, match="task.model: .*no site named 'claw'"):
        C.compose(["task=arm", *model, "task.model.observations=[qpos,site:claw]"])
    with pytest.raises(C.ConfigError, match="task.model.file"):
        C.compose(["task=arm", "task.model.max_episode_steps=30"])


def test_the_task_config_of_an_env_id_is_found_by_its_env_id():
    from sim.model_task import REACH_ARM_ID

    assert C.task_config_for("Pusher-v5") == "pusher"
    assert C.task_config_for(REACH_ARM_ID) == "arm"
    assert C.task_config_for("InvertedPendulum-v5") is None


def test_a_run_saved_before_task_hooks_existed_gets_its_tasks_success_and_demonstrator(tmp_path):
    from sim.tasks import attach_task, success_function

    saved = C.compose(["task=pusher", "task.reward=success"])
    del saved.task.success
    del saved.task.demos.demonstrator
    OmegaConf.save(saved, tmp_path / "config.yaml")
    assert "success:" not in (tmp_path / "config.yaml").read_text()
    attach_task("Pusher-v5")  # what a process that never loaded Pusher's config knows: nothing
    cfg = C.load_saved(tmp_path / "config.yaml")
    assert cfg.task.success == "sim.tasks:pusher_successes"
    assert cfg.task.demos.demonstrator == "sim.demonstrators.pusher:PusherDemonstrator"
    assert success_function("Pusher-v5") is not None
