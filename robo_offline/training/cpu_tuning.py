"""Process-wide CPU settings the training loop applies while it runs, and restores after.

Both change how the whole process computes or allocates, so they are context managers that the
trainer enters around its loop (`train.flush_denormal`, `train.cache_freed_memory`) and that the
throughput benchmark enters around its timed updates.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from functools import cache

import torch

# glibc's mallopt parameters and their defaults (malloc.h; mallopt(3))
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
DEFAULT_THRESHOLD = 128 * 1024
KEEP_TRIM = 1 << 30  # return free heap memory to the OS only above 1 GiB
KEEP_MMAP = 32 << 20  # glibc's largest mmap threshold on 64-bit: blocks up to 32 MiB come from the heap


@contextlib.contextmanager
def denormals_flushed(enabled: bool) -> Iterator[None]:
    """Subnormal floats to zero while training (Cal-QL's backward makes many; 2-3x faster on CPU)."""
    if not enabled:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (musl and macOS have no working mallopt)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


@contextlib.contextmanager
def freed_memory_cached(enabled: bool) -> Iterator[bool]:
    """Keep freed blocks up to 32 MiB in the process's heap for reuse (glibc only); yields whether glibc took it.

    torch's CPU allocator is plain malloc. By default glibc maps large blocks fresh and trims freed heap
    memory back to the OS, so each update of CQL or Cal-QL, whose activations are (2, 7936, 256) tensors
    of 4-16 MiB, page-faults and zeroes that memory anew. glibc's adaptive threshold avoids this in some runs
    only; measured, CQL on the arm in bf16 trained at 37.0-37.6 updates/s with the blocks kept and at
    24.2-35.0 without (2-core Xeon with AMX, two runs each). The cost: the process keeps the memory it freed,
    up to its peak, instead of returning it between updates. The glibc defaults (128 KiB thresholds) are set
    back afterwards.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    accepted = libc.mallopt(M_MMAP_THRESHOLD, KEEP_MMAP) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM) == 1
    try:
        yield accepted
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
