"""Per-action latency of an exported policy in every runtime we ship, single-threaded.

    python benchmarks/latency.py [--steps 5000] [--hidden 256 256]

Default network: Pusher-sized MLP 23 -> 256 -> 256 -> 7 with tanh output, Pusher safety
config. Each row steps the stateful policy (normaliser, MLP, scaling, safety filter) through
the same random observations and reports p50/p99/max of the per-call wall time. The C++
rows are the harness's own measurement of the policy call (no I/O); goal: p99 <= 50 us.
On a shared machine the p99/max columns mostly measure preemption by other processes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf
from torch import nn

from deploy import EnvUnits, SafetyConfig, export_policy, load_policy
from deploy.cpp_build import build_policy_runner, missing_build_tools
from deploy.export import build_deployed_policy
from sim.envs import make_env
from sim.model_limits import with_model_limits

from _machine import machine

OBS_DIM, ACT_DIM = 23, 7
SAFETY_YAML = Path(__file__).resolve().parents[1] / "configs" / "safety" / "pusher.yaml"


def mlp(hidden: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    width = OBS_DIM
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, ACT_DIM), nn.Tanh())


def percentiles(samples_us: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_us)
    at = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return at(0.50), at(0.99), ordered[-1]


def time_python(
    step: Callable[[torch.Tensor], torch.Tensor], reset: Callable[[], None], observations: torch.Tensor, warmup: int
) -> tuple[float, float, float]:
    with torch.no_grad():
        for obs in observations[:warmup]:
            step(obs)
        reset()
        samples = []
        for obs in observations:
            start = time.perf_counter_ns()
            step(obs)
            samples.append((time.perf_counter_ns() - start) / 1e3)
    return percentiles(samples)


def time_cpp(runner: Path, policy_file: Path, observations: torch.Tensor, warmup: int) -> tuple[float, float, float]:
    rows = "\n".join(" ".join(repr(x) for x in row) for row in observations.tolist())
    result = subprocess.run(
        [str(runner), str(policy_file), "--warmup", str(warmup)], input=rows, capture_output=True, text=True, check=True
    )
    match = re.search(r"latency_us p50=([\d.e+-]+) p99=([\d.e+-]+) max=([\d.e+-]+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no latency line in policy_runner output:\n{result.stderr[-2000:]}")
    return tuple(float(x) for x in match.groups())  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the exported files here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    core = mlp(args.hidden)
    partial = SafetyConfig.from_dict(OmegaConf.to_container(OmegaConf.load(SAFETY_YAML)), validate=False)
    safety = with_model_limits(partial, make_env("Pusher-v5"))  # the YAML completed by the model's limits
    units = EnvUnits.identity(OBS_DIM, [-2.0] * ACT_DIM, [2.0] * ACT_DIM)
    observations = torch.randn(args.steps, OBS_DIM)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="latency_"))
    files = export_policy(
        core,
        units,
        safety=safety,
        metadata={"algorithm": "benchmark"},
        path=out_dir / "policy",
        check_observations=observations[:1000],
    )

    eager = build_deployed_policy(core, units, safety)
    rows = {"eager DeployedPolicy (Python)": time_python(eager, eager.reset, observations, args.warmup)}
    for name, fmt in (("TorchScript .pt (Python)", "torchscript"), ("AOTInductor .pt2 (Python)", "pt2")):
        loaded = load_policy(files[fmt])
        rows[name] = time_python(loaded.act, loaded.reset, observations, args.warmup)
    missing = missing_build_tools()
    if missing:
        print(f"skipping C++: {missing} not found")
    else:
        runner = build_policy_runner()
        rows["TorchScript .pt (C++ policy_runner)"] = time_cpp(runner, files["torchscript"], observations, args.warmup)
        rows["AOTInductor .pt2 (C++ policy_runner)"] = time_cpp(runner, files["pt2"], observations, args.warmup)

    hidden = " -> ".join(str(h) for h in [OBS_DIM, *args.hidden, ACT_DIM])
    print(f"\nmachine: {machine()}")
    print(f"per-action latency, 1 thread, MLP {hidden} + safety filter, {args.steps} steps (microseconds)")
    print(f"{'runtime':<38}{'p50':>10}{'p99':>10}{'max':>10}")
    for name, (p50, p99, worst) in rows.items():
        print(f"{name:<38}{p50:>10.1f}{p99:>10.1f}{worst:>10.1f}")


if __name__ == "__main__":
    main()
