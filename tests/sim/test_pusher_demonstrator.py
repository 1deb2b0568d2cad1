"""The scripted Pusher-v5 demonstrator: it solves the task, its quality knob orders, it is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from sim.behaviours import make_behaviour
from sim.demonstrators import make_demonstrator
from sim.demonstrators.pusher import PusherDemonstrator
from sim.demonstrators.sloppiness import QUALITY_LEVELS, resolve_quality
from sim.envs import make_env
from sim.rollout import rollout_episodes

PUSHER = "Pusher-v5"
SEEDS = 500  # episode k uses seed SEEDS + k


@pytest.fixture(scope="module")
def env():
    env = make_env(PUSHER)
    yield env
    env.close()


def _episodes(env, name: str, quality="expert", n: int = 10):
    behaviour = make_behaviour(name, env, quality=quality, seed=SEEDS)
    return rollout_episodes(env, behaviour, n, seed=SEEDS, progress=False)


@pytest.fixture(scope="module")
def expert_episodes(env):
    return _episodes(env, "scripted", "expert")


def test_expert_succeeds_in_a_clear_majority(expert_episodes):
    successes = [e.success for e in expert_episodes]
    assert all(s is not None for s in successes)
    assert sum(successes) >= 7, f"expert succeeded in {sum(successes)}/10 episodes"


def test_expert_beats_random_on_return(env, expert_episodes):
    random_returns = [e.total_return for e in _episodes(env, "random")]
    expert_returns = [e.total_return for e in expert_episodes]
    assert np.mean(expert_returns) > np.mean(random_returns) + 50


def test_expert_outscores_poor(env, expert_episodes):
    poor = _episodes(env, "scripted", "poor", n=6)
    expert = expert_episodes[:6]  # same seeds
    assert np.mean([e.total_return for e in expert]) > np.mean([e.total_return for e in poor])
    assert sum(e.success for e in expert) > sum(e.success for e in poor)


def test_noisy_demonstrator_is_reproducible_per_seed(env):
    def actions(seed: int) -> np.ndarray:
        demo = PusherDemonstrator(env, "medium", seed=0)
        return rollout_episodes(env, demo, 1, seed=seed, progress=False)[0].actions

    np.testing.assert_array_equal(actions(7), actions(7))
    assert not np.array_equal(actions(7), actions(8))


def test_actions_are_bounded_torques_and_the_env_state_is_untouched(env):
    demo = PusherDemonstrator(env, "poor", seed=1)
    obs, _ = env.reset(seed=3)
    demo.reset(3)
    qpos = env.unwrapped.data.qpos.copy()
    for _ in range(5):
        action = demo(obs)
        assert action.shape == (7,) and action.dtype == np.float32
        assert np.all(action >= -2.0) and np.all(action <= 2.0)
    np.testing.assert_array_equal(env.unwrapped.data.qpos, qpos)  # kinematics run on private MjData


def test_quality_levels_and_validation():
    assert resolve_quality("expert") == 1.0 > QUALITY_LEVELS["medium"] > QUALITY_LEVELS["poor"]
    assert resolve_quality(0.25) == 0.25 and resolve_quality("0.5") == 0.5
    with pytest.raises(ValueError, match="quality"):
        resolve_quality("great")
    with pytest.raises(ValueError, match="quality"):
        resolve_quality(1.5)


def test_envs_without_demonstrator_are_named_in_the_error():
    env = make_env("InvertedPendulum-v5")
    with pytest.raises(ValueError, match="InvertedPendulum-v5"):
        make_demonstrator(env)
    with pytest.raises(ValueError, match="InvertedPendulum-v5"):
        make_behaviour("scripted", env)


def test_expert_command_is_a_function_of_the_observation(env):
    """Replayed in shuffled order to a fresh instance, every recorded state gives the recorded command."""
    demo = PusherDemonstrator(env, "expert", seed=0)
    states, commands = [], []
    for seed in (0, 1):
        obs, _ = env.reset(seed=SEEDS + seed)
        demo.reset(SEEDS + seed)
        done = False
        while not done:
            command = demo(obs)
            states.append(obs.copy())
            commands.append(command)
            obs, _, terminated, truncated, _ = env.step(command)
            done = terminated or truncated
    fresh = PusherDemonstrator(env, "expert", seed=123)
    for i in np.random.default_rng(0).permutation(len(states)):
        np.testing.assert_allclose(fresh(states[i]), commands[i], atol=1e-5)
