"""Tasks from a MuJoCo model file: the example arm's env, its observation layout, success and demonstrator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from sim.demonstrators import ReachArmDemonstrator, make_demonstrator
from sim.envs import make_env
from sim.model_task import REACH_ARM, REACH_ARM_ID, ModelFileEnv, ModelTaskSpec, register_model_task, success_test
from sim.rollout import rollout_episodes
from sim.tasks import success_function


def test_the_example_arm_is_a_gymnasium_env_built_from_its_model_file():
    env = make_env(REACH_ARM_ID, seed=0)
    model = env.unwrapped.model
    assert isinstance(env.unwrapped, ModelFileEnv) and env.spec.max_episode_steps == REACH_ARM.max_episode_steps
    np.testing.assert_array_equal(env.action_space.low, model.actuator_ctrlrange[:, 0])  # actions: the actuators
    layout = env.unwrapped.layout
    assert [(name, s.start, s.stop) for name, s in layout.terms] == [
        ("qpos:shoulder,elbow,wrist", 0, 3),
        ("qvel:shoulder,elbow,wrist", 3, 6),
        ("site:fingertip", 6, 9),
        ("site:goal", 9, 12),
    ]
    obs, info = env.reset(seed=3)
    data = env.unwrapped.data
    np.testing.assert_allclose(obs[6:9], data.site_xpos[model.site("fingertip").id])
    np.testing.assert_allclose(obs[9:12], data.site_xpos[model.site("goal").id])
    assert REACH_ARM.goal_radius[0] <= np.linalg.norm(obs[9:11]) <= REACH_ARM.goal_radius[1]
    obs2, reward, terminated, truncated, info = env.step(np.zeros(3, np.float32))
    assert info["distance"] == pytest.approx(np.linalg.norm(obs2[6:9] - obs2[9:12]))
    assert reward == float(info["is_success"]) and not terminated


def test_success_is_a_function_of_the_observation_and_matches_the_env():
    env = make_env(REACH_ARM_ID, seed=1)
    obs, _ = env.reset(seed=1)
    goal = obs[9:12]
    near, far = obs.copy(), obs.copy()
    near[6:9], far[6:9] = goal + [0.015, 0, 0], goal + [0.025, 0, 0]
    np.testing.assert_array_equal(success_test(REACH_ARM)(np.stack([near, far])), [True, False])
    np.testing.assert_array_equal(success_function(REACH_ARM_ID)(np.stack([near, far])), [True, False])


def test_a_task_that_terminates_on_success_ends_its_episodes_at_the_first_success():
    env_id = register_model_task("ReachArmTerminating", dataclasses.replace(REACH_ARM, termination="success"))
    env = make_env(env_id)
    episodes = rollout_episodes(env, ReachArmDemonstrator(env, "expert", seed=0), 5, seed=0)
    for ep in episodes:
        assert ep.success and ep.terminations[-1] and ep.length < REACH_ARM.max_episode_steps
        assert ep.rewards[:-1].sum() == 0 and ep.rewards[-1] == 1  # no success before the last step


def test_a_users_termination_function_ends_the_episode_and_a_bad_one_fails_at_registration():
    spec = dataclasses.replace(REACH_ARM, termination="builders:terminate_near_goal")
    env = make_env(register_model_task("ReachArmUserTermination", spec))
    episode = rollout_episodes(env, ReachArmDemonstrator(env, "expert", seed=0), 1, seed=0)[0]
    distance = np.linalg.norm(episode.observations[:, 6:9] - episode.observations[:, 9:12], axis=-1)
    assert episode.terminations[-1] and distance[-1] < 0.05 and (distance[:-1] >= 0.05).all()
    with pytest.raises(ValueError, match="task.model.termination"):
        register_model_task("ReachArmBadTermination", dataclasses.replace(REACH_ARM, termination="nowhere:fn"))


def test_the_example_arms_demonstrator_succeeds_by_quality():
    env = make_env(REACH_ARM_ID)
    rates = {}
    for quality in ("expert", "poor"):
        episodes = rollout_episodes(env, make_demonstrator(env, quality, seed=0), 20, seed=0)
        rates[quality] = np.mean([ep.success for ep in episodes])
    assert rates["expert"] >= 0.9 and rates["poor"] < rates["expert"]


def test_a_users_spec_registers_a_task_and_bad_specs_fail_naming_the_term(tmp_path):
    spec = dataclasses.replace(REACH_ARM, observations=("qpos", "qvel", "body:link3", "site:fingertip", "site:goal"))
    env = gym.make(register_model_task("ReachArmFullState", spec))
    assert env.observation_space.shape == (5 + 5 + 3 + 3 + 3,)
    with pytest.raises(ValueError, match="no site named 'claw'"):
        ModelFileEnv(dataclasses.replace(REACH_ARM, observations=("qpos", "site:claw")))
    with pytest.raises(KeyError, match="no term 'site:goal'"):  # success must be readable from the observation
        ModelFileEnv(dataclasses.replace(REACH_ARM, observations=("qpos", "site:fingertip")))
    with pytest.raises(FileNotFoundError, match="no MuJoCo model at nowhere.xml"):
        ModelFileEnv(dataclasses.replace(REACH_ARM, model="nowhere.xml"))
    assert mujoco.MjModel.from_xml_path(str(REACH_ARM.model_path())).nu == 3


def test_pusher_rebuilt_from_its_own_asset_reproduces_its_observations_step_by_step():
    """Same state, same actions -> the same observations as gymnasium's Pusher-v5 (within 1e-6). Its reset and
    reward are code in Pusher-v5, not facts of the model (a rejection-sampled puck position and a fixed goal;
    -0.5 |tips - puck| - |puck - goal| - 0.1 |a|^2), so the state is copied after Pusher's own reset and only
    observations are compared."""
    asset = Path(gym.envs.mujoco.__file__).parent / "assets" / "pusher_v5.xml"
    arm = ",".join(f"r_{j}_joint" for j in ("shoulder_pan", "shoulder_lift", "upper_arm_roll", "elbow_flex",
                                                "forearm_roll", "wrist_flex", "wrist_roll"))  # fmt: skip
    spec = ModelTaskSpec(model=str(asset), observations=(f"qpos:{arm}", f"qvel:{arm}", "body:tips_arm",
                                                         "body:object", "body:goal"))  # fmt: skip
    ours, theirs = ModelFileEnv(spec), gym.make("Pusher-v5").unwrapped
    ours.reset(seed=0)
    expected, _ = theirs.reset(seed=5)
    ours.set_state(theirs.data.qpos.copy(), theirs.data.qvel.copy())
    np.testing.assert_allclose(ours._get_obs(), expected, atol=1e-6)
    actions = np.random.default_rng(0).uniform(-2, 2, (50, 7))
    for action in actions:
        obs, *_ = ours.step(action)
        expected, *_ = theirs.step(action)
        np.testing.assert_allclose(obs, expected, atol=1e-6)
