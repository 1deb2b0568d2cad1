"""Seeds per hour: N seeds as one batched model (`train.seeds=N`) against N separate processes.

    python benchmarks/seed_batching.py                        # IQL on the arm's demos, N = 1, 4, 8
    python benchmarks/seed_batching.py --algo calql --steps 300 --seeds 1 4
    python benchmarks/seed_batching.py --device cuda          # on a GPU (processes then share it)

Every configuration is a real `robo-offline pretrain` run (evaluation off, so the table measures
training): the batched one is one process with all the machine's cores; the separate runs are
one process per seed with `train.threads=1`, as many at a time as there are cores (what a sweep
on this machine does). Wall time includes each process's start-up (imports, data load), which
a sweep pays too. seeds/hour = N x 3600 / wall seconds, for `--steps` updates per seed. The
seed-updates/s column is the batched loop's rate from its metrics times N (start-up excluded).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from robo_offline.training.metrics import read_csv

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent


def pretrain(overrides: list[str], env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "robo_offline.cli", "pretrain", *overrides]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")


def common(args: argparse.Namespace, data: Path) -> list[str]:
    return [
        f"task={args.task}",
        f"algo={args.algo}",
        f"task.dataset={data}",
        "task.demos.qualities=[medium]",
        "task.eval_episodes=0",
        f"train.steps={args.steps}",
        f"train.log_every={args.steps}",
        f"train.checkpoint_every={args.steps}",
        f"train.device={args.device}",
        "train.progress=false",
    ]


def batched(args: argparse.Namespace, n: int, data: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, seed-updates/s in the training loop) of one process training n seeds."""
    run_dir = out / f"batched-{n}"
    start = time.perf_counter()
    pretrain([*common(args, data), f"train.seeds={n}", f"train.threads={args.cores}", f"run_dir={run_dir}"], env)
    wall = time.perf_counter() - start
    first = run_dir / "seed_0" if n > 1 else run_dir
    return wall, n * read_csv(first / "train.csv")["updates_per_s"][-1]  # every loop update is n seeds' updates


def separate(args: argparse.Namespace, n: int, data: Path, out: Path, env: dict[str, str]) -> float:
    """Wall seconds of n single-seed processes, `args.cores` at a time."""
    runs = [
        [*common(args, data), f"train.seed={s}", "train.threads=1", f"run_dir={out}/single-{n}-{s}"] for s in range(n)
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(args.cores, n)) as pool:
        list(pool.map(lambda o: pretrain(o, env), runs))
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="iql")
    p.add_argument("--task", default="arm")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--steps", type=int, default=500, help="updates per seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data", type=Path, default=Path("data/arm-medium"), help="dataset (generated if missing)")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        pretrain([*common(args, args.data), "train.steps=1", f"run_dir={out}/warm"], env)  # the data, once
        for n in args.seeds:
            wall_b, rate = batched(args, n, args.data, out, env)
            wall_s = separate(args, n, args.data, out, env)
            rows.append((n, wall_b, n * 3600 / wall_b, rate, wall_s, n * 3600 / wall_s))
            print(f"N={n}: batched {wall_b:.1f} s, separate {wall_s:.1f} s", flush=True)

    print(f"\nmachine: {machine()}")
    print(
        f"{args.algo} on {args.task} ({args.data}), {args.steps} updates per seed, batch 256, device {args.device}, "
        f"{args.cores} cores; separate runs: 1 thread each, {args.cores} at a time\n"
    )
    print(
        "| seeds | batched wall s | batched seeds/hour | batched seed-updates/s in the loop | separate wall s | "
        "separate seeds/hour | batched / separate |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, wall_b, sph_b, rate, wall_s, sph_s in rows:
        print(f"| {n} | {wall_b:.1f} | {sph_b:.0f} | {rate:.1f} | {wall_s:.1f} | {sph_s:.0f} | {sph_b / sph_s:.2f}x |")


if __name__ == "__main__":
    main()
