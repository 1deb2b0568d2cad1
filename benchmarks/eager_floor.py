"""How fast PyTorch eager runs BC's update at all at these sizes: ours beside a hand-written minimal loop.

BC's update is one 11 -> 256 -> 256 -> 3 MLP, an MSE loss and Adam, on a batch of 256 (the
sizes of throughput.py). The minimal loop is the shortest PyTorch code for it: `nn.Sequential`,
`randint` + `index_select` sampling, fused Adam, no framework. Its rate is the floor of eager
PyTorch's fixed per-update costs (dispatch, autograd, optimiser) that any library built on it
pays; ours is timed as throughput.py times it (the trainer's CPU settings). Variants are
interleaved over `--rounds` so machine noise hits both alike; the best round is reported.

    python benchmarks/eager_floor.py [--steps 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from typing import Any

import torch
from throughput import ACT_DIM, OBS_DIM, build_algo, random_dataset
from torch import nn

from robo_offline.training.cpu_tuning import denormals_flushed, freed_memory_cached

from _machine import machine
from _timing import timed_loop


def minimal_bc_step(dataset: Any, batch_size: int, generator: torch.Generator) -> Callable[[], Any]:
    net = nn.Sequential(
        nn.Linear(OBS_DIM, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, ACT_DIM), nn.Tanh()
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    obs, act = dataset.observations, dataset.actions

    def step() -> dict:
        i = torch.randint(len(obs), (batch_size,), generator=generator)
        loss = nn.functional.mse_loss(net(obs.index_select(0, i)).float(), act.index_select(0, i))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    return step


def ours_bc_step(dataset: Any, batch_size: int, generator: torch.Generator) -> Callable[[], Any]:
    algo = build_algo("bc", [256, 256], 10**6)
    return lambda: algo.update(dataset.sample(batch_size, generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed updates per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = random_dataset(100_000)
    runs = {}
    for name, build in (("minimal PyTorch loop", minimal_bc_step), ("robo-offline BC", ours_bc_step)):
        for dtype in ("fp32", "bf16"):
            runs[(name, dtype)] = build(dataset, 256, torch.Generator().manual_seed(0))
    best: dict[tuple[str, str], float] = {key: 0.0 for key in runs}
    with denormals_flushed(True), freed_memory_cached(True):
        for _ in range(args.rounds):
            for (name, dtype), step in runs.items():
                ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
                with ctx:
                    rate = timed_loop(step, args.steps, warmup=30, repeats=1)["ups"]
                best[(name, dtype)] = max(best[(name, dtype)], rate)
    print(f"machine: {machine()}")
    print(f"BC update, batch 256, hidden [256, 256], obs {OBS_DIM}, act {ACT_DIM}; best of {args.rounds} rounds")
    print("| update | fp32 upd/s | bf16 upd/s |")
    print("|---|---:|---:|")
    for name in dict.fromkeys(n for n, _ in runs):
        print(f"| {name} | {best[(name, 'fp32')]:.0f} | {best[(name, 'bf16')]:.0f} |")


if __name__ == "__main__":
    main()
