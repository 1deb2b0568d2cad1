"""Snapshot and restore a running MuJoCo environment mid-episode, so a killed online run continues exactly.

Gymnasium has no state API, and its MuJoCo envs pickle as constructor arguments (EzPickle),
which loses the episode. The state is therefore taken explicitly: MuJoCo's integration state
(`mj_getState` with mjSTATE_INTEGRATION: everything the next step depends on), the env's
random generator, and the wrappers' memory (TimeLimit's step count, the safety filter's last
action and observation).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


def supports_state(env: gym.Env) -> bool:
    """True for MuJoCo-backed environments (those whose episode can be snapshotted)."""
    u = env.unwrapped
    return isinstance(getattr(u, "model", None), mujoco.MjModel) and isinstance(getattr(u, "data", None), mujoco.MjData)


def get_env_state(env: gym.Env) -> dict[str, Any]:
    if not supports_state(env):
        raise TypeError(f"{env.spec.id if env.spec else env}: only MuJoCo environments can be snapshotted")
    u = env.unwrapped
    physics = np.empty(mujoco.mj_stateSize(u.model, SPEC))
    mujoco.mj_getState(u.model, u.data, physics, SPEC)
    return {"physics": physics, "np_random": u.np_random.bit_generator.state, "wrappers": _wrapper_states(env)}


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore a snapshot into an env of the same id and wrapper stack (reset at least once)."""
    u = env.unwrapped
    mujoco.mj_setState(u.model, u.data, np.asarray(state["physics"], dtype=np.float64), SPEC)
    mujoco.mj_forward(u.model, u.data)  # positions of bodies and sites, as observations read them
    u.np_random.bit_generator.state = state["np_random"]
    layers = _wrappers(env)
    if len(layers) != len(state["wrappers"]):
        raise ValueError("environment snapshot was taken with a different wrapper stack")
    for wrapper, saved in zip(layers, state["wrappers"]):
        if isinstance(wrapper, gym.wrappers.TimeLimit):
            wrapper._elapsed_steps = saved
        elif hasattr(wrapper, "load_state_dict"):
            wrapper.load_state_dict(saved)


def _wrappers(env: gym.Env) -> list[gym.Wrapper]:
    layers = []
    while isinstance(env, gym.Wrapper):
        layers.append(env)
        env = env.env
    return layers


def _wrapper_states(env: gym.Env) -> list[Any]:
    states: list[Any] = []
    for wrapper in _wrappers(env):
        if isinstance(wrapper, gym.wrappers.TimeLimit):
            states.append(wrapper._elapsed_steps)
        elif hasattr(wrapper, "state_dict"):
            states.append(wrapper.state_dict())
        else:
            states.append(None)
    return states
