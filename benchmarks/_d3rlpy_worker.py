"""d3rlpy side of `throughput.py`: runs inside `benchmarks/.venv-d3rlpy` (d3rlpy pins gymnasium 1.0).

Builds each d3rlpy 2.x algorithm without an environment or dataset (`algo.create_impl(
observation_shape, action_size)`), with the settings `throughput.py` gives ours: batch 256,
every network hidden [256, 256] (BCQ's VAE 750 x 750, as ours), obs 11, act 3, and the same
n_critics / sampled-action counts / delays, then times two ways of updating:

  impl  `algo.impl.update(TorchMiniBatch, grad_step)` on batches drawn exactly like ours
        (`torch.randint` + `index_select` on in-memory tensors): the update math alone.
  api   `algo.update(TransitionMiniBatch)`, the public per-batch API, on batches gathered with
        numpy fancy indexing (vectorised; d3rlpy's own ReplayBuffer samples transition by
        transition in Python and would be slower): adds d3rlpy's numpy -> torch conversion.

FLOPs per update are counted with `FlopCounterMode` like ours. Writes JSON to --out. This file
imports nothing from robo_offline; the timing loop is `_timing.py`'s, shared with `throughput.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import traceback
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from _timing import timed_loop

OBS_DIM, ACT_DIM = 11, 3


def build(name: str, hidden: list[int], batch_size: int) -> Any:
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory

    enc = lambda: VectorEncoderFactory(hidden_units=list(hidden))  # noqa: E731
    if name == "bc":
        cfg = d3rlpy.algos.BCConfig(batch_size=batch_size, learning_rate=1e-3, policy_type="deterministic",
                                    encoder_factory=enc())  # fmt: skip
    elif name == "iql":
        cfg = d3rlpy.algos.IQLConfig(batch_size=batch_size, actor_encoder_factory=enc(), critic_encoder_factory=enc(),
                                     value_encoder_factory=enc(), n_critics=2, expectile=0.7, weight_temp=3.0,
                                     max_weight=100.0)  # fmt: skip
    elif name in ("cql", "calql"):
        # ours: cql_alpha 5 fixed (lagrange off) -> conservative_weight 5 with alpha' frozen at 1
        # (alpha_learning_rate 0 creates no alpha' optimiser); n_actions 10; Cal-QL's
        # max_target_backup is on by default in ours -> max_q_backup.
        cls = d3rlpy.algos.CalQLConfig if name == "calql" else d3rlpy.algos.CQLConfig
        cfg = cls(batch_size=batch_size, actor_encoder_factory=enc(), critic_encoder_factory=enc(), n_critics=2,
                  n_action_samples=10, conservative_weight=5.0, alpha_learning_rate=0.0, initial_alpha=1.0,
                  alpha_threshold=0.0, max_q_backup=(name == "calql"))  # fmt: skip
    elif name == "bcq":
        cfg = d3rlpy.algos.BCQConfig(batch_size=batch_size, actor_encoder_factory=enc(), critic_encoder_factory=enc(),
                                     imitator_encoder_factory=VectorEncoderFactory(hidden_units=[750, 750]),
                                     n_critics=2, n_action_samples=10, lam=0.75, action_flexibility=0.05,
                                     rl_start_step=0, update_actor_interval=1, beta=0.5)  # fmt: skip
    elif name == "td3bc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(batch_size=batch_size, actor_encoder_factory=enc(),
                                           critic_encoder_factory=enc(), n_critics=2, alpha=2.5,
                                           update_actor_interval=2)  # fmt: skip
    elif name == "sac":
        cfg = d3rlpy.algos.SACConfig(batch_size=batch_size, actor_encoder_factory=enc(), critic_encoder_factory=enc(),
                                     n_critics=2, actor_learning_rate=3e-4, critic_learning_rate=3e-4,
                                     temp_learning_rate=3e-4, initial_temperature=1.0)  # fmt: skip
    else:
        raise ValueError(f"no d3rlpy counterpart for {name!r}")
    algo = cfg.create(device="cpu:0")
    algo.create_impl((OBS_DIM,), ACT_DIM)
    return algo


def make_data(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "observations": torch.randn(n, OBS_DIM, generator=g),
        "actions": torch.rand(n, ACT_DIM, generator=g) * 2 - 1,
        "rewards": torch.rand(n, 1, generator=g),
        "next_observations": torch.randn(n, OBS_DIM, generator=g),
        "terminals": torch.zeros(n, 1),
        "returns_to_go": torch.rand(n, 1, generator=g) * 100,  # Cal-QL's reference values
    }


def torch_sampler(data: dict[str, torch.Tensor], batch_size: int, seed: int) -> Callable[[], Any]:
    from d3rlpy.torch_utility import TorchMiniBatch

    gen = torch.Generator().manual_seed(seed)
    n = data["observations"].shape[0]
    ones = torch.ones(batch_size, 1)

    def sample() -> Any:
        idx = torch.randint(n, (batch_size,), generator=gen)
        t = {k: v.index_select(0, idx) for k, v in data.items()}
        return TorchMiniBatch(
            observations=t["observations"], actions=t["actions"], rewards=t["rewards"],
            next_observations=t["next_observations"], next_actions=t["actions"],
            returns_to_go=t["returns_to_go"], terminals=t["terminals"], intervals=ones, device="cpu:0",
        )  # fmt: skip

    return sample


def numpy_sampler(data: dict[str, torch.Tensor], batch_size: int, seed: int) -> Callable[[], Any]:
    from d3rlpy.dataset import TransitionMiniBatch

    rng = np.random.default_rng(seed)
    arrays = {k: v.numpy() for k, v in data.items()}
    n = arrays["observations"].shape[0]
    ones = np.ones((batch_size, 1), np.float32)

    def sample() -> Any:
        idx = rng.integers(0, n, batch_size)
        a = {k: v[idx] for k, v in arrays.items()}
        return TransitionMiniBatch(
            observations=a["observations"], actions=a["actions"], rewards=a["rewards"],
            next_observations=a["next_observations"], next_actions=a["actions"], terminals=a["terminals"],
            intervals=ones, transitions=[],
        )  # fmt: skip

    return sample


def measure(name: str, threads: int, args: argparse.Namespace, data: dict[str, torch.Tensor]) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    res: dict[str, Any] = {"algo": name, "threads": threads}

    algo = build(name, args.hidden, args.batch_size)
    sample = torch_sampler(data, args.batch_size, args.seed)
    state = {"step": 0}

    def impl_step() -> Any:
        out = algo.impl.update(sample(), state["step"])
        state["step"] += 1
        return out

    r = timed_loop(impl_step, args.steps, args.warmup, args.repeats)
    res.update(impl_ups=r["ups"], impl_ups_all=r["ups_all"])
    counter = FlopCounterMode(display=False)
    with counter:
        for _ in range(2):  # TD3+BC's delayed actor counted at its rate
            impl_step()
    res["flops"] = counter.get_total_flops() / 2

    if name == "calql":  # algo.update computes returns-to-go from per-transition objects
        res["api_ups"] = None
        res["note"] = "API path n/a: Cal-QL's algo.update needs per-transition rewards_to_go"
    else:
        algo = build(name, args.hidden, args.batch_size)
        np_sample = numpy_sampler(data, args.batch_size, args.seed)
        r = timed_loop(lambda: algo.update(np_sample()), args.steps, args.warmup, args.repeats)
        res.update(api_ups=r["ups"], api_ups_all=r["ups_all"])
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--algos", nargs="+", required=True)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--dataset-size", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    import d3rlpy

    data = make_data(args.dataset_size, args.seed)
    results = []
    for t in args.threads:
        for name in args.algos:
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # d3rlpy logs to stdout
                    results.append(measure(name, t, args, data))
            except Exception as e:  # report, don't invent: the table shows the error
                traceback.print_exc()
                results.append({"algo": name, "threads": t, "error": f"{type(e).__name__}: {e}"})
    info = {"d3rlpy_version": d3rlpy.__version__, "torch": torch.__version__, "results": results}
    with open(args.out, "w") as f:
        json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()
