"""Update throughput of every algorithm, against the machine's matmul ceiling and against d3rlpy.

For each algorithm and thread count (`torch.set_num_threads`) this times `algo.update` on
batches sampled the way the trainer samples them (`TransitionDataset.sample`: `torch.randint`
indices + `index_select` on an in-memory dataset of random transitions), sampling included in
the timed loop. Every algorithm uses hidden [256, 256] (CQL's paper default of 3 x 256 is
overridden; BCQ's VAE keeps its own 750 x 750), batch 256, Hopper-v5 sizes (obs 11, act 3).

Next to updates/s it reports:
  * FLOPs per update, counted by `torch.utils.flop_counter.FlopCounterMode` around updates
    (forward + backward matmuls; the counter does not count element-wise work, and Adam has
    no matmuls). Averaged over 2 updates so TD3+BC's delayed actor is counted at its rate.
  * % of fp32 peak: achieved GFLOP/s over the best large square `torch.mm` at that thread count.
  * % of shape ceiling: achieved GFLOP/s over what the update's own GEMMs reach when replayed
    back to back with the same ops, shapes, strides and dtypes (recorded under a dispatch
    mode). Small GEMMs (256 x 14 x 256, 2560 x 256 x 256...) never reach the big-square peak,
    so this is the honest ceiling; it is also the fraction of the step that is GEMM time.
  * "as trained": the variant the trainer runs by default on this machine (`train.precision=auto` for
    the algorithm, denormals flushed, freed memory cached), against d3rlpy; measured in every run.
  * with `--compile --bf16` also the compiled update under bf16 autocast (as `train.compile` with bf16).
  * d3rlpy's same algorithms (optional), run in their own virtual environment
    (`benchmarks/.venv-d3rlpy`, created on first use) by `_d3rlpy_worker.py`.

Usage (a real measurement wants a quiet machine):

    python benchmarks/throughput.py                        # all algorithms, 1 and 2 threads
    python benchmarks/throughput.py --steps 20 --warmup 5 --threads 1 --algos bc iql  # smoke
    python benchmarks/throughput.py --bf16 --compile --out throughput.json
    python benchmarks/throughput.py --no-d3rlpy
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from robo_offline.algos import ALGORITHMS
from robo_offline.data import Batch
from robo_offline.data.dataset import TransitionDataset
from robo_offline.training.cpu_tuning import KEEP_MMAP, KEEP_TRIM, denormals_flushed, freed_memory_cached
from robo_offline.training.precision import resolve_precision

from _machine import machine
from _timing import timed_loop

HERE = Path(__file__).resolve().parent
OBS_DIM, ACT_DIM = 11, 3  # Hopper-v5
D3RLPY_VERSION = "2.8.1"
D3RLPY_ALGOS = {"bc", "iql", "cql", "calql", "bcq", "td3bc", "sac"}  # d3rlpy 2.8 has Cal-QL and SAC too
MATMUL_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
}


# ---------------------------------------------------------------------------------------------
# data and algorithms


def random_dataset(n: int, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM, seed: int = 0) -> TransitionDataset:
    """`n` random transitions in 1000-step episodes, as a real `TransitionDataset` on the CPU."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g)
    terminals = torch.zeros(n)
    timeouts = torch.zeros(n)
    timeouts[999::1000] = 1.0
    timeouts[-1] = 1.0
    return TransitionDataset(
        obs,
        torch.rand(n, act_dim, generator=g) * 2 - 1,
        torch.rand(n, generator=g),
        torch.randn(n, obs_dim, generator=g),
        terminals,
        timeouts,
        torch.arange(n) // 1000,
        torch.rand(n, generator=g) * 100,
    )


def build_algo(name: str, hidden: list[int], total_steps: int) -> Any:
    cls = ALGORITHMS[name]
    cfg = cls.config_class()
    cfg.hidden_dims = list(hidden)
    return cls(cfg, OBS_DIM, ACT_DIM).setup(total_steps)


@dataclass
class Variant:
    """How `update` is run: plain fp32, under bf16 autocast with subnormals flushed (as the trainer runs bf16),
    compiled, or fp32 with subnormal floats flushed to zero (`torch.set_flush_denormal(True)`, the trainer's fp32)."""

    name: str
    bf16: bool = False
    compile: bool = False
    ftz: bool = False

    def context(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def update_fn(self, algo: Any) -> Callable[[Batch], dict]:
        if self.compile:
            # A fresh dynamo state per measurement: CQL and Cal-QL share one `update` code object,
            # and the recompile limit counts per code object. Host-side int counters on the module
            # (CQL's and TD3+BC's `self.updates`) are static by default and would recompile on
            # every step until the limit, then silently run eager; unspecialising them is what a
            # user would do (dynamo's own hint), so the benchmark does it.
            torch._dynamo.reset()
            torch._dynamo.config.allow_unspec_int_on_nn_module = True
            return torch.compile(algo.update)
        return algo.update


# ---------------------------------------------------------------------------------------------
# timing


def best_time(fn: Callable[[], Any], min_time: float = 0.02, repeats: int = 5) -> float:
    """Best per-call seconds of `fn` over `repeats` batches of calls each lasting >= min_time."""
    fn()
    n = 1
    while True:  # calibrate the batch length
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time or n >= 1 << 20:
            break
        n *= 2
    best = dt / n
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def matmul_peak(size: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of a large square `torch.mm` (best of `repeats`)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    t = best_time(lambda: torch.mm(a, b, out=out), min_time=0.05, repeats=repeats)
    return 2 * size**3 / t / 1e9


# ---------------------------------------------------------------------------------------------
# FLOPs and GEMM shapes of one update


@dataclass(frozen=True)
class GemmSig:
    """One GEMM call as dispatched: op, and (shape, stride, dtype) of each tensor argument."""

    op: Any
    tensors: tuple[tuple[tuple[int, ...], tuple[int, ...], torch.dtype], ...]
    scalars: tuple[tuple[str, Any], ...]

    @property
    def flops(self) -> int:
        shapes = [s for s, _, _ in self.tensors]
        a, b = shapes[-2], shapes[-1]  # (.., M, K), (.., K, N)
        batch = a[0] if len(a) == 3 else 1
        return 2 * batch * a[-2] * a[-1] * b[-1]

    def describe(self) -> str:
        """e.g. `bmm 2x256x7936x256 A^T float32`: op, [batch x] M x K x N, transposed operands, dtype."""
        (a, sa, _), (b, sb, dt) = self.tensors[-2], self.tensors[-1]
        lead = f"{a[0]}x" if len(a) == 3 else ""
        layout = " ".join(f"{n}^T" for n, st in (("A", sa), ("B", sb)) if st[-1] != 1)
        if len(a) == 3 and 0 in (sa[0], sb[0]):
            layout += " bcast"  # an operand shared by all batch members (stride 0)
        name = self.op.__name__.split(".")[0]
        return " ".join(x for x in (name, f"{lead}{a[-2]}x{a[-1]}x{b[-1]}", layout, str(dt).replace("torch.", "")) if x)

    def replay(self) -> Callable[[], Any]:
        args = [_strided_randn(s, st, dt) for s, st, dt in self.tensors]
        kwargs = dict(self.scalars)
        op = self.op
        return lambda: op(*args, **kwargs)


def _strided_randn(shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Random tensor with exactly this layout (stride-0 expanded dims included: filled via the storage)."""
    extent = 1 + sum((n - 1) * st for n, st in zip(shape, stride) if n > 0)
    return torch.randn(extent).to(dtype).as_strided(shape, stride)


class GemmRecorder(TorchDispatchMode):
    """Records every mm / addmm / bmm / baddbmm call (forward and backward) with its layout."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[GemmSig] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMUL_OPS:
            tensors = tuple((tuple(a.shape), tuple(a.stride()), a.dtype) for a in args if isinstance(a, torch.Tensor))
            scalars = tuple(sorted((k, v) for k, v in kwargs.items() if not isinstance(v, torch.Tensor)))
            self.calls[GemmSig(func, tensors, scalars)] += 1
        return func(*args, **kwargs)


def count_update(
    update: Callable[[Batch], Any], sample: Callable[[], Batch], variant: Variant, n: int = 2
) -> tuple[float, Counter]:
    """FLOPs per update (FlopCounterMode, mean over `n` updates) and the GEMM calls per update."""
    recorder = GemmRecorder()
    counter = FlopCounterMode(display=False)
    with counter, recorder:
        for _ in range(n):
            batch = sample()
            with variant.context():
                update(batch)
    calls = Counter({sig: c / n for sig, c in recorder.calls.items()})
    return counter.get_total_flops() / n, calls


def shape_ceiling(calls: Counter) -> tuple[float, float, list[dict]]:
    """Seconds per update if only its GEMMs ran back to back at their measured speed, and GFLOP/s."""
    total_t, total_f, rows = 0.0, 0.0, []
    for sig, count in sorted(calls.items(), key=lambda kv: -kv[0].flops * kv[1]):
        t = best_time(sig.replay(), min_time=0.02, repeats=5)
        total_t += count * t
        total_f += count * sig.flops
        rows.append({"gemm": sig.describe(), "per_update": count, "gflops_s": sig.flops / t / 1e9})
    return total_t, (total_f / total_t / 1e9 if total_t else float("nan")), rows


GEMM_KEYS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def profile_update(step: Callable[[], Any], n: int, top: int = 8) -> dict[str, Any]:
    """Where the time of one update goes: self CPU time per aten op (torch.profiler), ms per update."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(n):
            step()
    events = [e for e in prof.key_averages(group_by_input_shape=True) if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events) / n / 1e3
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_KEYS) / n / 1e3
    events.sort(key=lambda e: -e.self_cpu_time_total)
    ops = [
        {"op": e.key, "shapes": str(e.input_shapes)[:80], "calls": e.count / n, "ms": e.self_cpu_time_total / n / 1e3}
        for e in events[:top]
    ]
    n_ops = sum(e.count for e in events) / n
    return {"aten_ms": total, "gemm_ms": gemm, "aten_calls": n_ops, "top": ops}


# ---------------------------------------------------------------------------------------------
# our algorithms


def measure_ours(
    name: str, threads: int, variant: Variant, args: argparse.Namespace, dataset: TransitionDataset
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    algo = build_algo(name, args.hidden, args.warmup + args.steps + 10)
    update = variant.update_fn(algo)
    sample = lambda: dataset.sample(args.batch_size, gen)  # noqa: E731 - the trainer's sampler
    ctx = variant.context()

    def step() -> dict:
        batch = sample()
        with ctx:
            return update(batch)

    with denormals_flushed(variant.ftz):
        return _measure(name, threads, variant, args, algo, update, sample, step)


def _measure(
    name: str,
    threads: int,
    variant: Variant,
    args: argparse.Namespace,
    algo: Any,
    update: Callable[[Batch], dict],
    sample: Callable[[], Batch],
    step: Callable[[], dict],
) -> dict[str, Any]:
    t_compile = time.perf_counter()
    if variant.compile:  # compile time is reported, not timed: a few updates outside the loop
        from torch._dynamo.utils import counters

        counters.clear()
        for _ in range(4):
            step()
    t_compile = time.perf_counter() - t_compile
    res = timed_loop(step, args.steps, args.warmup, args.repeats)
    res.update(algo=name, threads=threads, variant=variant.name)
    if variant.compile:
        res["compile_s"] = t_compile
        res["graphs"] = counters["stats"]["unique_graphs"]  # after the timed loop: recompiles included
        res["graph_breaks"] = sum(counters["graph_break"].values())
        return res
    if args.profile:
        res["profile"] = profile_update(step, args.profile)
    flops, calls = count_update(algo.update, sample, variant)
    gemm_t, gemm_gflops, rows = shape_ceiling(calls)
    res.update(
        flops=flops,
        gemm_flops=sum(sig.flops * c for sig, c in calls.items()),
        gemm_calls=sum(calls.values()),
        shape_ceiling_gflops=gemm_gflops,
        gemm_time_s=gemm_t,
        gemms=rows,
    )
    return res


# ---------------------------------------------------------------------------------------------
# d3rlpy in its own environment


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_d3rlpy_venv(venv: Path, version: str) -> tuple[Path | None, str]:
    """Create `venv` with torch==<ours> first (the local CPU wheel), then d3rlpy; (python, note)."""
    py = venv_python(venv)
    stamp = venv / f".installed-d3rlpy-{version}"
    if stamp.exists() and py.exists():
        return py, ""
    torch_version = torch.__version__.split("+")[0]
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        # torch first: with our pinned version in place pip keeps it, instead of pulling a
        # multi-GB CUDA build as d3rlpy's dependency (the CPU wheel is found through pip's config).
        [str(py), "-m", "pip", "install", "--quiet", f"torch=={torch_version}"],
        [str(py), "-m", "pip", "install", "--quiet", f"d3rlpy=={version}", f"torch=={torch_version}"],
    ]
    for cmd in steps:
        print(f"[d3rlpy venv] {' '.join(cmd)}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-3:]
            return None, f"could not create the d3rlpy environment ({' '.join(cmd[1:])}): {' | '.join(errors)}"
    stamp.touch()
    return py, ""


def run_d3rlpy(args: argparse.Namespace, algos: list[str]) -> tuple[dict[tuple[str, int], dict], dict]:
    """{(algo, threads): result} from the worker, and run info (version, or why it did not run)."""
    wanted = [a for a in algos if a in D3RLPY_ALGOS]
    if not wanted:
        return {}, {"status": "no d3rlpy counterpart for the chosen algorithms"}
    py, note = ensure_d3rlpy_venv(Path(args.d3rlpy_venv), args.d3rlpy_version)
    if py is None:
        return {}, {"status": note}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "d3rlpy.json"
        cmd = [
            str(py), str(HERE / "_d3rlpy_worker.py"),
            "--algos", *wanted,
            "--threads", *map(str, args.threads),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
            "--batch-size", str(args.batch_size), "--hidden", *map(str, args.hidden),
            "--dataset-size", str(args.dataset_size), "--seed", str(args.seed), "--out", str(out),
        ]  # fmt: skip
        print(f"[d3rlpy] running worker in {args.d3rlpy_venv}", file=sys.stderr, flush=True)
        env = os.environ.copy()
        if args.d3rlpy_cache_freed_memory:  # glibc's tunables: the same setting as ours, from outside the process
            env.update(MALLOC_MMAP_THRESHOLD_=str(KEEP_MMAP), MALLOC_TRIM_THRESHOLD_=str(KEEP_TRIM))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {}, {"status": f"worker failed (rc {proc.returncode}): {' | '.join(tail)}"}
        data = json.loads(out.read_text())
    results = {(r["algo"], r["threads"]): r for r in data["results"]}
    return results, {k: v for k, v in data.items() if k != "results"} | {"status": "ok"}


# ---------------------------------------------------------------------------------------------
# report


def fmt(v: Any, spec: str = ".0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def build_rows(
    ours: dict[tuple[str, int, str], dict],
    d3: dict[tuple[str, int], dict],
    d3_info: dict,
    peaks: dict[tuple[int, str], float],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    rows = []
    for name in args.algos:
        for t in args.threads:
            r = ours[(name, t, "fp32")]
            if "error" in r:
                rows.append({"algo": name, "threads": t, "notes": [f"fp32 failed: {r['error']}"]})
                continue
            notes: list[str] = []
            gflop = r["flops"] / 1e9
            achieved = gflop * r["ups"]
            row: dict[str, Any] = {
                "algo": name,
                "threads": t,
                "ours_ups": r["ups"],
                "gflop_per_update": gflop,
                "achieved_gflops": achieved,
                "pct_fp32_peak": 100 * achieved / peaks[(t, "fp32")],
                "shape_ceiling_gflops": r["shape_ceiling_gflops"],
                "pct_shape_ceiling": 100 * achieved / r["shape_ceiling_gflops"],
                "gemm_calls": r["gemm_calls"],
                "notes": notes,
            }
            if not args.no_d3rlpy:
                d = d3.get((name, t))
                if d is None:
                    why = "no counterpart" if name not in D3RLPY_ALGOS else d3_info.get("status", "not run")
                    row.update(d3rlpy_ups=None, d3rlpy_api_ups=None, speedup=None, d3rlpy_note=why)
                elif d.get("error"):
                    row.update(d3rlpy_ups=None, d3rlpy_api_ups=None, speedup=None, d3rlpy_note=d["error"])
                else:
                    row.update(
                        d3rlpy_ups=d["impl_ups"],
                        d3rlpy_api_ups=d.get("api_ups"),
                        speedup=r["ups"] / d["impl_ups"],
                        d3rlpy_gflop_per_update=d.get("flops", 0) / 1e9 or None,
                        d3rlpy_note=d.get("note", ""),
                    )
            if args.bf16 and "error" in ours[(name, t, "bf16")]:
                notes.append(f"bf16 failed: {ours[(name, t, 'bf16')]['error']}")
            elif args.bf16:
                b = ours[(name, t, "bf16")]
                row.update(
                    bf16_ups=b["ups"],
                    bf16_speedup=b["ups"] / r["ups"],
                    bf16_vs_d3rlpy=b["ups"] / row["d3rlpy_ups"] if row.get("d3rlpy_ups") else None,
                    bf16_pct_peak=100 * b["flops"] / 1e9 * b["ups"] / peaks[(t, "bf16")],
                    bf16_pct_shape_ceiling=100 * b["flops"] / 1e9 * b["ups"] / b["shape_ceiling_gflops"],
                )
            if args.flush_denormal and "error" in ours[(name, t, "ftz")]:
                notes.append(f"flush-denormal run failed: {ours[(name, t, 'ftz')]['error']}")
            elif args.flush_denormal:
                z = ours[(name, t, "ftz")]
                row.update(ftz_ups=z["ups"], ftz_speedup=z["ups"] / r["ups"])
            row.update(as_trained(name, t, ours, row))
            if args.compile and "error" in ours[(name, t, "compile")]:
                notes.append(f"torch.compile failed: {ours[(name, t, 'compile')]['error']}")
            elif args.compile:
                c = ours[(name, t, "compile")]
                row.update(compile_ups=c["ups"], compile_speedup=c["ups"] / r["ups"], compile_s=c["compile_s"],
                           compile_graphs=c["graphs"], compile_graph_breaks=c["graph_breaks"])  # fmt: skip
            cb = ours.get((name, t, "compile-bf16"))
            if cb is not None and "error" in cb:
                notes.append(f"torch.compile in bf16 failed: {cb['error']}")
            elif cb is not None and "error" not in ours[(name, t, "bf16")]:
                row.update(compile_bf16_ups=cb["ups"], compile_bf16_speedup=cb["ups"] / ours[(name, t, "bf16")]["ups"])
            rows.append(row)
    return rows


def trained_variant(name: str) -> Variant:
    """The variant the trainer runs by default on this machine: `train.precision=auto` for this algorithm on this
    CPU (training/precision.py), denormals flushed (`train.flush_denormal`)."""
    bf16 = resolve_precision("auto", torch.device("cpu"), ALGORITHMS[name].bf16_parity).dtype == "bf16"
    return Variant("bf16" if bf16 else "ftz", bf16=bf16, ftz=True)


def as_trained(name: str, t: int, ours: dict, row: dict) -> dict[str, Any]:
    """Updates/s of the trained variant (always measured), and against d3rlpy."""
    variant = trained_variant(name).name
    r = ours[(name, t, variant)]
    if "error" in r:
        return {"auto_variant": variant}
    d3 = row.get("d3rlpy_ups")
    return {"auto_variant": variant, "auto_ups": r["ups"], "auto_vs_d3rlpy": r["ups"] / d3 if d3 else None}


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    cols = [("algo", "algo", "s"), ("threads", "threads", "d"), ("ours upd/s", "ours_ups", ".0f")]
    if not args.no_d3rlpy:
        cols += [("d3rlpy upd/s", "d3rlpy_ups", ".0f"), ("d3rlpy API upd/s", "d3rlpy_api_ups", ".0f"),
                 ("speedup", "speedup", ".2f")]  # fmt: skip
    cols += [("GFLOP/update", "gflop_per_update", ".3f")]
    if not args.no_d3rlpy:
        cols += [("d3rlpy GFLOP/update", "d3rlpy_gflop_per_update", ".3f")]
    cols += [
        ("achieved GFLOP/s", "achieved_gflops", ".1f"),
        ("% of fp32 peak", "pct_fp32_peak", ".1f"),
        ("shape ceiling GFLOP/s", "shape_ceiling_gflops", ".1f"),
        ("% of shape ceiling", "pct_shape_ceiling", ".1f"),
    ]
    if args.bf16:
        cols += [("bf16 upd/s", "bf16_ups", ".0f"), ("bf16 x", "bf16_speedup", ".2f")]
        if not args.no_d3rlpy:
            cols += [("bf16 / d3rlpy", "bf16_vs_d3rlpy", ".2f")]
        cols += [("bf16 % of bf16 peak", "bf16_pct_peak", ".1f"),
                 ("bf16 % of shape ceiling", "bf16_pct_shape_ceiling", ".1f")]  # fmt: skip
    if args.compile:
        cols += [("compile upd/s", "compile_ups", ".0f"), ("compile x", "compile_speedup", ".2f"),
                 ("compile time s", "compile_s", ".0f")]  # fmt: skip
    if args.compile and args.bf16:
        cols += [
            ("compile bf16 upd/s", "compile_bf16_ups", ".0f"),
            ("compile bf16 / bf16", "compile_bf16_speedup", ".2f"),
        ]
    if args.flush_denormal:
        cols += [("FTZ upd/s", "ftz_ups", ".0f"), ("FTZ x", "ftz_speedup", ".2f")]
    if any(r.get("auto_ups") for r in rows):
        cols += [("as trained: auto", "auto_variant", "s"), ("as trained upd/s", "auto_ups", ".0f")]
        if not args.no_d3rlpy:
            cols += [("as trained / d3rlpy", "auto_vs_d3rlpy", ".2f")]
    lines = ["| " + " | ".join(c[0] for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k), spec) for _, k, spec in cols) + " |")
    notes = list(dict.fromkeys((r["algo"], f"d3rlpy: {r['d3rlpy_note']}") for r in rows if r.get("d3rlpy_note")))
    notes += list(dict.fromkeys((r["algo"], n) for r in rows for n in r.get("notes", [])))
    if notes:
        lines.append("")
        lines += [f"- {a}: {n}" for a, n in notes]
    return "\n".join(lines)


def write_out(path: Path, rows: list[dict], meta: dict, details: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        flat = [{**r, "notes": "; ".join(r.get("notes", []))} for r in rows]
        keys = list(dict.fromkeys(k for r in flat for k in r))
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(flat)
    else:
        path.write_text(json.dumps({"meta": meta, "rows": rows, "details": details}, indent=2, default=str))


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="timed updates per (algo, threads, variant)")
    p.add_argument("--warmup", type=int, default=200, help="untimed updates before timing")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks; the median chunk rate is reported")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--algos", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden_dims of every algorithm")
    p.add_argument("--dataset-size", type=int, default=100_000)
    p.add_argument("--peak-size", type=int, default=2048, help="side of the square matmul of the peak")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bf16", action="store_true", help="also measure under bf16 autocast (as train.precision=bf16)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile(algo.update)")
    p.add_argument("--flush-denormal", action="store_true",
                   help="also measure fp32 with torch.set_flush_denormal(True) (subnormals -> 0)")  # fmt: skip
    p.add_argument("--no-d3rlpy", action="store_true", help="skip the d3rlpy comparison")
    p.add_argument("--no-cache-freed-memory", action="store_true",
                   help="time ours without train.cache_freed_memory (on by default, as in the trainer)")  # fmt: skip
    p.add_argument("--d3rlpy-cache-freed-memory", action="store_true",
                   help="run d3rlpy with our glibc setting (MALLOC_*_THRESHOLD_); it sets none itself")  # fmt: skip
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N updates per (algo, threads): top aten ops by self time")  # fmt: skip
    p.add_argument("--d3rlpy-venv", default=str(HERE / ".venv-d3rlpy"))
    p.add_argument("--d3rlpy-version", default=D3RLPY_VERSION)
    p.add_argument("--out", type=Path, help="also write the table: .csv, otherwise JSON (with details)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with freed_memory_cached(not args.no_cache_freed_memory) as cached:
        run(args, cached)


def run(args: argparse.Namespace, cached: bool) -> None:
    variants = [Variant("fp32")]
    if args.bf16:
        variants.append(Variant("bf16", bf16=True, ftz=True))
    if args.compile:
        variants.append(Variant("compile", compile=True))
        if args.bf16:  # as train.compile with train.precision=bf16 would run it
            variants.append(Variant("compile-bf16", bf16=True, ftz=True, compile=True))
    if args.flush_denormal:
        variants.append(Variant("ftz", ftz=True))

    dataset = random_dataset(args.dataset_size, seed=args.seed)
    peaks: dict[tuple[int, str], float] = {}
    ours: dict[tuple[str, int, str], dict] = {}
    for t in args.threads:
        torch.set_num_threads(t)
        peaks[(t, "fp32")] = matmul_peak(args.peak_size, torch.float32)
        if args.bf16:
            peaks[(t, "bf16")] = matmul_peak(args.peak_size, torch.bfloat16)
        print(f"[peak] {t} thread(s): " + ", ".join(f"{k[1]} {v:.1f} GFLOP/s" for k, v in peaks.items() if k[0] == t),
              file=sys.stderr, flush=True)  # fmt: skip
        for name in args.algos:
            trained = trained_variant(name)  # measured in every run, once
            for v in variants + ([] if trained.name in {v.name for v in variants} else [trained]):
                try:
                    r = measure_ours(name, t, v, args, dataset)
                except Exception as e:  # e.g. torch.compile failing on an update: reported, not fatal
                    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    msg = f"{type(e).__name__}: {text.split('. ')[0][:160]}"
                    ours[(name, t, v.name)] = {"algo": name, "threads": t, "variant": v.name, "error": msg}
                    print(f"[ours] {name:6s} {t} thr {v.name:7s} FAILED {msg}", file=sys.stderr, flush=True)
                    continue
                ours[(name, t, v.name)] = r
                extra = f"  ({r['graphs']} graphs, {r['graph_breaks']} breaks)" if v.compile else ""
                print(f"[ours] {name:6s} {t} thr {v.name:7s} {r['ups']:8.1f} upd/s{extra}", file=sys.stderr, flush=True)

    d3, d3_info = ({}, {"status": "skipped (--no-d3rlpy)"}) if args.no_d3rlpy else run_d3rlpy(args, args.algos)
    rows = build_rows(ours, d3, d3_info, peaks, args)
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "obs_dim": OBS_DIM,
        "act_dim": ACT_DIM,
        "dataset_size": args.dataset_size,
        "peaks_gflops": {f"{k[1]}@{k[0]}": v for k, v in peaks.items()},
        "d3rlpy": d3_info,
        "cache_freed_memory": cached,
        "d3rlpy_cache_freed_memory": args.d3rlpy_cache_freed_memory,
    }
    print()
    print(f"machine: {machine()}")
    print(
        f"Update throughput: batch {args.batch_size}, hidden {args.hidden}, obs {OBS_DIM}, act {ACT_DIM}, "
        f"{args.steps} timed updates after {args.warmup} warm-up (median of {args.repeats} chunks), "
        f"torch {torch.__version__}; ours with freed blocks cached (train.cache_freed_memory): {cached}"
        + ("" if args.no_d3rlpy else f", d3rlpy: {args.d3rlpy_cache_freed_memory}")
    )
    peaks_text = ", ".join(f"{k}: {v:.1f} GFLOP/s" for k, v in meta["peaks_gflops"].items())
    print(f"Matmul peak (square {args.peak_size} mm): {peaks_text}")
    if not args.no_d3rlpy:
        print(f"d3rlpy: {d3_info.get('d3rlpy_version', '-')} ({d3_info.get('status')}); "
              "'d3rlpy upd/s' = impl.update on TorchMiniBatch sampled like ours; "
              "'API upd/s' = algo.update(TransitionMiniBatch) from numpy; speedup = ours / d3rlpy upd/s")  # fmt: skip
    print()
    print(markdown(rows, args))
    if args.profile:
        print("\nWhere the time goes (torch.profiler self CPU time, ms per update; the profiler adds overhead):")
        for (name, t, vname), r in ours.items():
            if "profile" not in r:
                continue
            pr = r["profile"]
            print(f"\n{name}, {t} thread(s), {vname}: {pr['aten_ms']:.2f} ms in {pr['aten_calls']:.0f} aten calls, "
                  f"GEMMs {pr['gemm_ms']:.2f} ms ({100 * pr['gemm_ms'] / pr['aten_ms']:.0f}%)")  # fmt: skip
            for o in pr["top"]:
                print(f"  {o['ms']:8.3f} ms  {o['calls']:5.1f}x  {o['op']:28s} {o['shapes']}")
    if args.out:
        details = [dict(r) for r in ours.values()] + [dict(r) for r in d3.values()]
        write_out(args.out, rows, meta, details)
        print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
