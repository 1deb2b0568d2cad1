"""Time `load_dataset` against a plain h5py read of the same arrays (goal: ratio <= 1.5x).

Writes a 1M-transition D4RL-layout file once (Hopper sizes: obs 11, act 3, 1000-step
episodes, a few ending in terminals), cached under $ROBO_OFFLINE_CACHE or the temp dir, then
times both several times and prints the medians. `--no-next-obs` benchmarks the variant
without `next_observations`, where the loader derives them (qlearning_dataset convention).

    python benchmarks/data_load.py [--repeats 7] [--no-next-obs]
    python benchmarks/data_load.py --transitions 10000000 --memory   # peak memory of a 10M-transition load

`--memory` loads the file once in a fresh process and reports its peak resident memory above what the
process held before the load, against the size of the file's arrays (goal: at most 1.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from robo_offline.data import load_dataset

from _machine import machine

N_TRANSITIONS = 1_000_000
OBS_DIM, ACT_DIM, EPISODE_LEN = 11, 3, 1000
N_TERMINAL_EPISODES = 20  # these end early, at step 500, in a terminal


def cached_file(with_next_obs: bool, n: int = N_TRANSITIONS) -> Path:
    cache = Path(os.environ.get("ROBO_OFFLINE_CACHE", Path(tempfile.gettempdir()) / "robo_offline_cache"))
    size = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)
    path = cache / f"d4rl_hopper_{size}{'' if with_next_obs else '_no_next'}.hdf5"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write_hopper_like(partial, with_next_obs, n)
        partial.rename(path)  # atomic: an interrupted write never leaves a half file under the real name
    return path


def write_hopper_like(path: Path, with_next_obs: bool, n: int = N_TRANSITIONS) -> None:
    rng = np.random.default_rng(0)
    observations = rng.standard_normal((n + 1, OBS_DIM), dtype=np.float32)
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[EPISODE_LEN - 1 :: EPISODE_LEN] = True
    early = rng.choice(n // EPISODE_LEN, N_TERMINAL_EPISODES, replace=False) * EPISODE_LEN + 499
    terminals[early] = True
    with h5py.File(path, "w") as f:
        f["observations"] = observations[:n]
        if with_next_obs:
            f["next_observations"] = observations[1:]
        f["actions"] = rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32)
        f["rewards"] = rng.uniform(0, 4, n).astype(np.float32)
        f["terminals"] = terminals
        f["timeouts"] = timeouts
        f.attrs["env_id"] = "Hopper-v5"
        f.attrs["action_low"] = -np.ones(ACT_DIM)
        f.attrs["action_high"] = np.ones(ACT_DIM)


def plain_h5py(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in f.keys()}


def interleaved_medians(fns: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds per function, alternating calls so load from other
    processes on a shared machine hits every method alike."""
    for fn in fns.values():
        fn()  # warm the page cache and the allocator
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - wall_start)
            cpu[name].append(time.process_time() - cpu_start)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def array_bytes(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return sum(f[key].size * f[key].dtype.itemsize for key in f.keys())


def peak_memory_of_load(path: Path) -> int:
    """Peak resident bytes a fresh process adds while `load_dataset(path)` runs (imports excluded).

    The peak is the process's VmHWM, not `ru_maxrss`: Linux carries ru_maxrss over from the parent
    through fork and exec, so right after this script wrote a large file the child's baseline was
    the parent's peak and a 10M load measured 0.40x its arrays instead of 1.17x.
    """
    child = (
        "import sys, torch\n"
        "from robo_offline.data import load_dataset\n"
        "def hwm():\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "    return int(status.split()[0])\n"
        "torch.set_num_threads(1)\n"
        "before = hwm()\n"
        "data = load_dataset(sys.argv[1])\n"
        "print(hwm() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", child, str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) * 1024  # VmHWM is in kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-next-obs", action="store_true", help="file without next_observations")
    parser.add_argument("--transitions", type=int, default=N_TRANSITIONS)
    parser.add_argument("--memory", action="store_true", help="peak memory of one load instead of timings")
    args = parser.parse_args()
    torch.set_num_threads(1)

    path = cached_file(with_next_obs=not args.no_next_obs, n=args.transitions)
    print(f"machine: {machine()}")
    if args.memory:
        arrays, peak = array_bytes(path), peak_memory_of_load(path)
        print(f"{path.name}: {args.transitions:,} transitions, arrays {arrays / 2**20:.0f} MiB")
        print(f"load_dataset peak resident memory: {peak / 2**20:.0f} MiB = {peak / arrays:.2f}x the arrays")
        return
    results = interleaved_medians(
        {"plain h5py f[k][()]": lambda: plain_h5py(path), "load_dataset": lambda: load_dataset(path)}, args.repeats
    )
    base_wall, base_cpu = results["plain h5py f[k][()]"]
    print(f"{path.name}: {args.transitions:,} transitions, median of {args.repeats} interleaved runs")
    print(f"{'method':<22}{'wall s':>9}{'ratio':>7}{'cpu s':>9}{'ratio':>7}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<22}{wall:>9.4f}{wall / base_wall:>7.2f}{cpu:>9.4f}{cpu / base_cpu:>7.2f}")


if __name__ == "__main__":
    main()
