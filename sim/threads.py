"""Torch's intra-op thread count, scoped to a block.

Acting for one observation (rollouts, evaluation, latency checks) is a chain of tiny ops: extra
threads only add wake-up cost, ~50x per call on a busy 2-core machine (0.15 ms -> 8 ms per
Hopper action), so those blocks run single-threaded and training keeps its threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
