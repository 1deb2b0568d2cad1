"""The timing loop shared by `throughput.py` and `_d3rlpy_worker.py`.

Torch and the standard library only: the d3rlpy worker runs in its own virtual environment
(d3rlpy pins gymnasium 1.0) and imports this file from the benchmarks directory, not robo_offline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed_loop(step: Callable[[], Any], steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Warm up, then `repeats` chunks of ~steps/repeats calls; updates/s per chunk, median reported."""
    for _ in range(warmup):
        step()
    chunk = max(1, steps // repeats)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(chunk):
            out = step()
        _sync(out)
        rates.append(chunk / (time.perf_counter() - t0))
    return {"ups": statistics.median(rates), "ups_all": rates, "steps": chunk * repeats}


def _sync(out: Any) -> None:
    """Touch the last result so nothing is left pending (a no-op cost on the CPU, kept for honesty)."""
    if isinstance(out, dict) and out:
        float(next(iter(out.values())))
