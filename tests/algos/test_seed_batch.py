"""N seeds trained as one batched model update each seed exactly as its single run would."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch
from builders import ACT, OBS, algorithm_cases, random_batch

from robo_offline.algos import Algorithm, algorithm_class
from robo_offline.algos.seed_batch import load_seed_training_states, seed_training_state, stack_seeds
from robo_offline.data import Batch

SEEDS = [3, 7, 11]
UPDATES = 4  # TD3+BC's delayed actor step and CQL's BC warm-up both fall inside
CPU = torch.device("cpu")
OFFLINE_CASES, OFFLINE_IDS = algorithm_cases(bc_steps=2)  # the BC warm-up ends inside the compared updates
CASES, IDS = [*OFFLINE_CASES, ("sac", {})], [*OFFLINE_IDS, "sac"]


def build(name: str, overrides: dict[str, Any]) -> Algorithm:
    cls = algorithm_class(name)
    return cls(cls.config_class(hidden_dims=[32, 32], **overrides), OBS, ACT)


def per_seed_batches() -> list[list[Batch]]:
    g = torch.Generator().manual_seed(5)
    return [[random_batch(g) for _ in range(UPDATES)] for _ in SEEDS]


def stacked(batches: list[Batch]) -> Batch:
    return Batch(*(torch.stack(field) for field in zip(*batches)))


def single_runs(name: str, overrides: dict[str, Any], batches: list[list[Batch]], grad_clip: float | None):
    """Each seed alone, as a run with `train.seed = s` trains it: seeded, built, then updated."""
    runs, infos = [], []
    for seed, seed_batches in zip(SEEDS, batches):
        torch.manual_seed(seed)
        algo = build(name, overrides).setup(total_steps=20, grad_clip=grad_clip)
        infos.append([algo.update(b) for b in seed_batches])
        runs.append(algo)
    return runs, infos


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=IDS)
def test_batched_seeds_update_as_their_single_runs(name: str, overrides: dict[str, Any]):
    grad_clip = 0.5 if name in ("iql", "cql") else None  # per-seed clipping, where it binds
    batches = per_seed_batches()
    singles, single_infos = single_runs(name, overrides, batches, grad_clip)

    torch.manual_seed(999)  # the batch draws from its own per-seed generators, not the global one
    batch_algo = stack_seeds(lambda: build(name, overrides), SEEDS, CPU).setup(total_steps=20, grad_clip=grad_clip)
    infos = [batch_algo.update(stacked([b[k] for b in batches])) for k in range(UPDATES)]

    for i, single in enumerate(singles):
        got = seed_training_state(batch_algo, i)
        for key, want in single.state_dict().items():
            torch.testing.assert_close(got["modules"][key], want, atol=1e-5, rtol=0, msg=f"{name} seed {i}: {key}")
        for k in range(UPDATES):
            for metric, want in single_infos[i][k].items():
                assert infos[k][metric].shape == (len(SEEDS),), metric
                torch.testing.assert_close(infos[k][metric][i], want, atol=1e-5, rtol=1e-5, msg=metric)


def test_a_seed_leaves_the_batch_as_a_single_run_and_comes_back():
    """A seed's state loads into a single run (which trains on as that seed), and the states stack back."""
    name, overrides = "cql", {}
    batches = per_seed_batches()
    batch_algo = stack_seeds(lambda: build(name, overrides), SEEDS, CPU).setup(total_steps=20)
    for k in range(2):
        batch_algo.update(stacked([b[k] for b in batches]))
    states = []
    for i in range(len(SEEDS)):
        buf = io.BytesIO()
        torch.save(seed_training_state(batch_algo, i), buf)
        buf.seek(0)
        states.append(torch.load(buf, weights_only=False))
    noise_states = batch_algo.seed_batch.rng_states()

    alone = build(name, overrides).setup(total_steps=20)
    alone.load_training_state(copy.deepcopy(states[1]))  # Adam keeps the loaded tensors and steps them in place
    torch.set_rng_state(noise_states[1])
    alone.update(batches[1][2])

    again = stack_seeds(lambda: build(name, overrides), [0, 1, 2], CPU).setup(total_steps=20)
    load_seed_training_states(again, states)
    again.seed_batch.set_rng_states(noise_states)
    again.update(stacked([b[2] for b in batches]))
    batch_algo.update(stacked([b[2] for b in batches]))

    for key, want in alone.state_dict().items():
        torch.testing.assert_close(seed_training_state(again, 1)["modules"][key], want, atol=1e-5, rtol=0, msg=key)
    for key, want in batch_algo.state_dict().items():
        assert torch.equal(again.state_dict()[key], want), key
