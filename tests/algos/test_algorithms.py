"""Every algorithm trains on tiny random data, resumes bit-exactly, exports a scriptable policy, never syncs."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from builders import ACT, OBS, algorithm_cases, random_batch
from torch import Tensor

from robo_offline.algos import Algorithm, algorithm_class
from robo_offline.algos.base import adam

torch.set_num_threads(1)
STEPS = 201  # odd: the resume lands between TD3+BC's delayed updates
# every CQL option; the BC warm-up ends right after the resume, so the restored counter matters
CASES, IDS = algorithm_cases(bc_steps=STEPS + 1)


def make(name: str, seed: int, **overrides: Any) -> Algorithm:
    torch.manual_seed(seed)
    cls = algorithm_class(name)
    return cls(cls.config_class(hidden_dims=[32, 32], **overrides), OBS, ACT).setup(total_steps=STEPS + 10)


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=IDS)
def test_train_resume_export(name: str, overrides: dict[str, Any]):
    algo = make(name, 0, **overrides)
    g = torch.Generator().manual_seed(1)
    history = [algo.update(random_batch(g)) for _ in range(STEPS)]
    keys = set(history[0])
    assert all(set(h) == keys for h in history), "update must return the same keys every step"
    assert all(v.dim() == 0 and not v.requires_grad for v in history[-1].values())
    stacked = torch.stack([torch.stack(list(h.values())) for h in history])
    assert torch.isfinite(stacked).all(), f"non-finite losses: {keys}"

    # Round trip through bytes, as a checkpoint file, into a differently initialised instance.
    buf = io.BytesIO()
    torch.save(algo.training_state(), buf)
    buf.seek(0)
    resumed = make(name, 123, **overrides)
    resumed.load_training_state(torch.load(buf, weights_only=False))
    batches = [random_batch(g) for _ in range(3)]
    rng = torch.get_rng_state()
    for b in batches:
        algo.update(b)
    torch.set_rng_state(rng)
    for b in batches:
        resumed.update(b)
    ref, got = algo.state_dict(), resumed.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), f"{name}: {k} differs after resume"
    for k, opt in algo.optimizers.items():
        assert opt.param_groups[0]["lr"] == resumed.optimizers[k].param_groups[0]["lr"]

    # Deterministic, scriptable policy with actions in [-1, 1].
    policy = algo.policy()
    scripted = torch.jit.script(policy)
    obs = torch.randn(7, OBS) * 3
    with torch.no_grad():
        eager = policy(obs)
        assert eager.shape == (7, ACT) and eager.abs().max() <= 1.0
        assert torch.equal(policy(obs), eager)
        assert torch.allclose(scripted(obs), eager, atol=1e-6)


def test_iql_actor_learning_rate_follows_cosine_schedule():
    algo = make("iql", 0).setup(total_steps=4)
    g = torch.Generator().manual_seed(0)
    lrs = []
    for _ in range(4):
        algo.update(random_batch(g))
        lrs.append(algo.optimizers["actor"].param_groups[0]["lr"])
    # CosineAnnealingLR over 4 steps from 3e-4: 3e-4 * (1 + cos(pi * t / 4)) / 2 for t = 1..4
    assert lrs == pytest.approx([2.56066e-4, 1.5e-4, 4.3934e-5, 0.0], abs=1e-9)
    assert algo.optimizers["critic"].param_groups[0]["lr"] == 3e-4


_SYNC_METHODS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def _forbid_host_reads(algo: Algorithm) -> Iterator[None]:
    """Make every tensor -> host read raise inside `update` (backward included), except in optimiser steps.

    On CUDA these would each be a device sync; Adam's own reads of its CPU step counter are allowed.
    """
    state = {"on": True}
    originals = {m: getattr(torch.Tensor, m) for m in _SYNC_METHODS}

    def guard(method: str):
        def wrapped(self: Tensor, *args: Any, **kwargs: Any):
            if state["on"]:
                raise AssertionError(f"host read Tensor.{method} inside update")
            return originals[method](self, *args, **kwargs)

        return wrapped

    def unguarded(opt_step):
        def wrapped(*args: Any, **kwargs: Any):
            state["on"] = False
            try:
                return opt_step(*args, **kwargs)
            finally:
                state["on"] = True

        return wrapped

    for opt in algo.optimizers.values():  # only the optimiser step itself is exempt
        opt.step = unguarded(opt.step)  # type: ignore[method-assign]
    for m in _SYNC_METHODS:
        setattr(torch.Tensor, m, guard(m))
    try:
        yield
    finally:
        for m, f in originals.items():
            setattr(torch.Tensor, m, f)
        for opt in algo.optimizers.values():
            del opt.step


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=IDS)
def test_update_reads_nothing_back_to_the_host(name: str, overrides: dict[str, Any]):
    algo = make(name, 0, **overrides)
    g = torch.Generator().manual_seed(0)
    batches = [random_batch(g) for _ in range(3)]
    with _forbid_host_reads(algo):
        for b in batches:
            algo.update(b)


@pytest.mark.parametrize("name", ["bc", "iql", "cql", "calql", "bcq", "td3bc", "sac"])
def test_what_fine_tuning_asks_of_an_algorithm(name: str):
    """explore / q_values / critics: stated on the base class, answered by each method."""
    algo = make(name, 0, **({"vae_hidden_dims": [32, 32]} if name == "bcq" else {}))
    obs, act = torch.randn(8, OBS), torch.rand(8, ACT) * 2 - 1
    q = algo.q_values(obs, act)
    if name == "bc":
        assert q is None and algo.critics() is None
    else:
        critic, target = algo.critics()
        assert q.shape == (8,) and torch.equal(q, critic(obs, act).min(0).values)
        assert target is not critic
    a = algo.explore(obs)
    assert a.shape == (8, ACT) and a.abs().max() <= 1.0
    stochastic = name in ("iql", "cql", "calql", "sac")
    assert (not torch.equal(algo.explore(obs), a)) == stochastic


def test_load_critic_from_takes_matching_critics_only():
    td3, calql = make("td3bc", 0), make("calql", 1)
    assert calql.load_critic_from(td3)  # both twin 32-32 ensembles
    for mine, theirs in zip(calql.critics(), td3.critics()):
        for p, q in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(p, q)
    wide = algorithm_class("calql")(algorithm_class("calql").config_class(hidden_dims=[64, 64]), OBS, ACT)
    before = [p.clone() for p in wide.critic.parameters()]
    assert not wide.load_critic_from(td3)
    assert all(torch.equal(p, q) for p, q in zip(before, wide.critic.parameters()))
    assert not calql.load_critic_from(make("bc", 0))


@pytest.mark.parametrize("name", ["cql", "calql"])
def test_conservative_methods_start_as_the_official_code(name: str):
    """Output layers shrunk by 1e-2 (Q near 0, actions near the box's centre), policy std near exp(-1)."""
    algo = make(name, 0)
    obs, act = torch.randn(64, OBS) * 3, torch.rand(64, ACT) * 2 - 1
    with torch.no_grad():
        assert algo.critic(obs, act).abs().max() < 0.05
        mu, log_std = algo.actor.heads(obs)
        assert mu.abs().max() < 0.05
        assert log_std.mean().item() == pytest.approx(-1.0, abs=0.05)
    plain = algorithm_class("sac")(algorithm_class("sac").config_class(hidden_dims=[32, 32]), OBS, ACT)
    with torch.no_grad():
        assert plain.critic(obs, act).abs().max() > 0.05  # SAC keeps PyTorch's default initialisation
    if name == "calql":  # orthogonal hidden layers, as the official conservative_sac_main
        w = algo.critic.net.layers[0].weight[0]
        torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(w.shape[0]), atol=1e-4, rtol=0)  # (in, out), in < out


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=IDS)
def test_every_optimiser_is_fused_on_cpu(name: str, overrides: dict[str, Any]):
    algo = make(name, 0, **overrides)
    assert all(o.defaults["fused"] for o in algo.optimizers.values())


def test_fused_adam_makes_the_per_tensor_update():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(11, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    twin = copy.deepcopy(net)
    fused, plain = adam(net.parameters(), 1e-3), torch.optim.Adam(twin.parameters(), lr=1e-3, foreach=False)
    x = torch.randn(64, 11)
    for _ in range(20):
        for model, opt in ((net, fused), (twin, plain)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
