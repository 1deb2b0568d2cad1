"""Task knowledge comes from the task config (sim.tasks.attach_task), for built-in and user env ids alike, and
Dict observations are flattened in one key order for logs and environments."""

from __future__ import annotations

import numpy as np
import pytest
from goal_env import GOAL_ID, goal_successes

from robo_offline.config import ConfigError, compose
from sim.demonstrators import make_demonstrator
from sim.envs import make_env
from sim.evaluation import evaluate
from sim.rewards import resolve_reward
from sim.tasks import attach_task, flattened_dict_keys

USER_TASK = [
    "task=pusher",
    f"task.env_id={GOAL_ID}",
    "task.success=goal_env:goal_successes",
    "task.demos.demonstrator=goal_env:GreedyDemonstrator",
]


def test_a_dict_observation_env_is_flattened_in_sorted_key_order_by_default():
    attach_task(GOAL_ID)
    env = make_env(GOAL_ID)
    obs, _ = env.reset(seed=0)
    raw, _ = env.unwrapped.reset(seed=0)
    expected = np.concatenate([raw["achieved_goal"], raw["desired_goal"], raw["observation"]])
    np.testing.assert_allclose(obs, expected, rtol=1e-6)
    assert env.observation_space.shape == (8,)
    assert flattened_dict_keys(env) == ("achieved_goal", "desired_goal", "observation")
    parts = env.get_wrapper_attr("observation_parts")()
    assert parts == [("achieved_goal", 2, ""), ("desired_goal", 2, ""), ("observation", 4, "")]


def test_task_obs_keys_choose_the_order_and_unknown_keys_are_refused():
    compose([*USER_TASK, "task.obs_keys=[observation,desired_goal,achieved_goal]"])
    env = make_env(GOAL_ID)
    obs, _ = env.reset(seed=1)
    raw, _ = env.unwrapped.reset(seed=1)
    np.testing.assert_allclose(obs, np.concatenate([raw["observation"], raw["desired_goal"], raw["achieved_goal"]]))
    compose([*USER_TASK, "task.obs_keys=[observation,goal]"])
    with pytest.raises(ValueError, match=r"task.obs_keys: \['goal'\]"):
        make_env(GOAL_ID)


def test_a_user_task_config_gives_its_own_env_id_a_success_test_reward_and_demonstrator():
    compose(USER_TASK)
    env = make_env(GOAL_ID)
    assert "is_success" in env.reset(seed=0)[1]
    result = evaluate(make_demonstrator(env), GOAL_ID, n_episodes=5, seed=0)
    assert result.success_rate == 1.0  # the greedy demonstrator reaches every goal within 20 steps
    spec = resolve_reward("success", GOAL_ID)
    obs = env.reset(seed=0)[0][None]
    assert spec(obs, np.zeros((1, 2)), obs)[0] == float(goal_successes(obs)[0])


def test_pushers_knowledge_is_its_task_configs():
    attach_task("Pusher-v5")  # what a config without success or demonstrator attaches
    env = make_env("Pusher-v5")
    assert "is_success" not in env.reset(seed=0)[1]
    with pytest.raises(ValueError, match="task.demos.demonstrator"):
        make_demonstrator(env)
    with pytest.raises(ValueError, match="has no success test"):
        resolve_reward("success", "Pusher-v5")
    compose(["task=pusher"])
    assert "is_success" in make_env("Pusher-v5").reset(seed=0)[1]
    make_demonstrator(make_env("Pusher-v5"))


@pytest.mark.parametrize(
    ("key", "value"), [("task.success", "nowhere:fn"), ("task.demos.demonstrator", "sim.tasks:no_such_class")]
)
def test_a_task_config_naming_what_cannot_be_imported_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose(["task=pusher", f"{key}={value}"])


def test_async_vector_env_workers_get_the_parents_task_knowledge():
    from sim.envs import make_vector_env

    compose([*USER_TASK, "task.obs_keys=[observation,desired_goal,achieved_goal]"])
    envs = make_vector_env(GOAL_ID, 2, seed=0, mode="async", context="spawn")  # fresh processes, nothing inherited
    try:
        obs, info = envs.reset(seed=0)
        raw, _ = make_env(GOAL_ID).unwrapped.reset(seed=0)
        np.testing.assert_allclose(
            obs[0], np.concatenate([raw["observation"], raw["desired_goal"], raw["achieved_goal"]])
        )
        assert "is_success" in info
    finally:
        envs.close()
