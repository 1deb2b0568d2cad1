"""Builders shared by the tests: small dataset files in each on-disk layout, episodes, and the overrides of a
seconds-long run. Plain functions (importable from any test directory: `pythonpath` in pyproject); the
fixtures built on them live in conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import torch

from robo_offline.algos.bc import BC, BCConfig
from robo_offline.data import Batch
from sim.episode import Episode


def reference_returns(rewards: np.ndarray, ends: np.ndarray, gamma: float) -> np.ndarray:
    """Textbook backward recursion for the return-to-go, one transition at a time."""
    out = np.zeros(len(rewards))
    following = 0.0
    for t in reversed(range(len(rewards))):
        if ends[t] or t == len(rewards) - 1:
            following = 0.0
        following = rewards[t] + gamma * following
        out[t] = following
    return out


def make_episode(
    rng: np.random.Generator,
    length: int,
    obs_dim: int = 3,
    act_dim: int = 2,
    *,
    terminated: bool = False,
    success: bool | None = None,
) -> Episode:
    """A random episode ending in a termination or, otherwise, a truncation."""
    terminations = np.zeros(length, dtype=bool)
    truncations = np.zeros(length, dtype=bool)
    (terminations if terminated else truncations)[-1] = True
    return Episode(
        observations=rng.standard_normal((length + 1, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (length, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(length).astype(np.float32),
        terminations=terminations,
        truncations=truncations,
        success=success,
    )


def write_d4rl(path: Path, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
    """A flat D4RL-layout file holding exactly `arrays` (so tests can leave keys out)."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def d4rl_arrays(rng: np.random.Generator, n: int = 20, obs_dim: int = 3, act_dim: int = 2) -> dict[str, np.ndarray]:
    """n transitions in episodes of 5 steps: the second ends in a terminal, the others in timeouts
    (an incomplete last episode has neither)."""
    observations = rng.standard_normal((n + 1, obs_dim)).astype(np.float32)
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[4::5] = True
    if n > 9:
        timeouts[9], terminals[9] = False, True
    return {
        "observations": observations[:n].copy(),  # copies: tests corrupt one without the other
        "next_observations": observations[1:].copy(),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.standard_normal(n).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_robomimic(path: Path, demos: list[dict[str, object]], env_name: str | None = "Lift") -> Path:
    """`demos`: dicts with obs/next_obs (dicts of arrays), actions, rewards, dones."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        if env_name is not None:
            data.attrs["env_args"] = json.dumps({"env_name": env_name, "type": 1, "env_kwargs": {}})
        for i, demo in enumerate(demos):
            group = data.create_group(f"demo_{i}")
            for part in ("obs", "next_obs"):
                for key, value in demo[part].items():
                    group[f"{part}/{key}"] = value
            for key in ("actions", "rewards", "dones"):
                group[key] = demo[key]
            group.attrs["num_samples"] = len(demo["actions"])
    return path


def robomimic_demo(rng: np.random.Generator, length: int, *, done: bool) -> dict[str, object]:
    """One demo with two observation keys: `eef_pos` (3) and `gripper` (2)."""
    eef = rng.standard_normal((length + 1, 3)).astype(np.float32)
    grip = rng.standard_normal((length + 1, 2)).astype(np.float32)
    dones = np.zeros(length, dtype=np.int64)
    if done:
        dones[-1] = 1
    return {
        "obs": {"eef_pos": eef[:-1], "gripper": grip[:-1]},
        "next_obs": {"eef_pos": eef[1:], "gripper": grip[1:]},
        "actions": rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        "rewards": rng.standard_normal(length).astype(np.float64),
        "dones": dones,
    }


PENDULUM = "InvertedPendulum-v5"  # the workflow tests' task: tiny observations, fast episodes


def tiny_run(
    data_dir: Path | str, *extra: str, algo: tuple[str, ...] = ("algo=calql", "algo.n_actions=2")
) -> list[str]:
    """Overrides of a seconds-long run on InvertedPendulum-v5 with 30 random demo episodes at `data_dir`."""
    return [
        "task=pusher",
        "safety=none",
        "task.reward=env",  # InvertedPendulum has no success test
        "task.success=null",
        "task.demos.demonstrator=null",
        *algo,
        f"task.env_id={PENDULUM}",
        f"task.dataset={data_dir}",
        "task.demos.behaviour=random",
        "task.demos.qualities=[random]",
        "task.demos.episodes_per_quality=30",
        "task.eval_episodes=2",
        "algo.hidden_dims=[32,32]",
        "train.batch_size=32",
        "train.steps=60",
        "train.log_every=20",
        "train.eval_every=60",
        "train.checkpoint_every=60",
        "train.progress=false",
        *extra,
    ]


def minus_one(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """A reward of -1 per step with no declared floor (`task.reward=builders:minus_one`)."""
    return -np.ones(len(obs), np.float32)


TINY_OBS, TINY_ACT = 4, 2


def tiny_bc_sampler(seed: int = 0):
    """A sampler of 16-row batches from 200 fixed transitions (actions a function of the state), and its generator."""
    obs = torch.randn(200, TINY_OBS, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    act = torch.tanh(obs[:, :TINY_ACT])
    zeros = torch.zeros(200)

    def sample() -> Batch:
        i = torch.randint(0, 200, (16,), generator=g)
        return Batch(obs[i], act[i], zeros[i], obs[i], zeros[i], zeros[i])

    return sample, g


def tiny_bc() -> BC:
    """BC with a 16-16 network for the sampler above, set up for 100 updates."""
    return BC(BCConfig(hidden_dims=[16, 16]), TINY_OBS, TINY_ACT).setup(total_steps=100)


def write_minari_dict_log(
    path: Path, rng: np.random.Generator, widths: dict[str, int], episodes: int = 20, act_dim: int = 1
) -> Path:
    """A Minari log whose observations are a Dict space (keys of the given widths), 10-step episodes, actions
    in [-1, 1]."""
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    space = gym.spaces.Dict({k: gym.spaces.Box(-np.inf, np.inf, (w,)) for k, w in widths.items()})
    (path / "data").mkdir(parents=True)
    storage = MinariStorage.new(path / "data", observation_space=space, action_space=gym.spaces.Box(-1, 1, (act_dim,)))
    storage.update_metadata({"dataset_id": "robo-offline/dict-v0", "minari_version": "0.5.4"})
    buffers = []
    for i in range(episodes):
        truncations = np.zeros(10, bool)
        truncations[-1] = True
        observations = {k: rng.standard_normal((11, w)).astype(np.float32) for k, w in widths.items()}
        actions = rng.uniform(-1, 1, (10, act_dim)).astype(np.float32)
        rewards, terminations = rng.standard_normal(10), np.zeros(10, bool)
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=observations,
                actions=actions,
                rewards=rewards,
                terminations=terminations,
                truncations=truncations,
            )
        )
    storage.update_episodes(buffers)
    return path


def terminate_near_goal(obs: np.ndarray) -> np.ndarray:
    """A model task's termination (`task.model.termination=builders:terminate_near_goal`): the example arm's
    fingertip (observation 6:9) within 5 cm of the goal (9:12), looser than its 2 cm success."""
    obs = np.asarray(obs)
    return np.linalg.norm(obs[..., 6:9] - obs[..., 9:12], axis=-1) < 0.05


OBS, ACT, BATCH = 5, 2, 32  # the algorithm tests' tiny problem


def random_batch(g: torch.Generator) -> Batch:
    """A random (BATCH, OBS / ACT) batch with some terminals and Monte-Carlo returns."""
    return Batch(
        observations=torch.randn(BATCH, OBS, generator=g),
        actions=torch.rand(BATCH, ACT, generator=g) * 2 - 1,
        rewards=torch.randn(BATCH, generator=g),
        next_observations=torch.randn(BATCH, OBS, generator=g),
        terminals=(torch.rand(BATCH, generator=g) < 0.05).float(),
        mc_returns=torch.randn(BATCH, generator=g) * 3,
    )


def algorithm_cases(bc_steps: int) -> tuple[list[tuple[str, dict]], list[str]]:
    """(name, config overrides) of every offline algorithm, and CQL with every option on (its BC warm-up
    `bc_steps` long), with readable test ids."""
    cases: list[tuple[str, dict]] = [
        ("bc", {}),
        ("iql", {}),
        ("cql", {}),
        ("calql", {}),
        ("bcq", {"vae_hidden_dims": [32, 32]}),
        ("td3bc", {}),
        ("cql", {"lagrange": True, "max_target_backup": True, "backup_entropy": True, "bc_steps": bc_steps}),
    ]
    return cases, [name if not kw or name == "bcq" else f"{name}-options" for name, kw in cases]
