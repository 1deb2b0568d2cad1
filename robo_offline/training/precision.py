"""Training precision: bf16 autocast where the hardware multiplies bf16 natively, fp32 elsewhere.

Native bf16 matmul means a CPU with AMX tiles (about 5x its fp32 rate) or a CUDA device of compute
capability 8.0 or newer. A CPU with AVX512-BF16 but no AMX runs bf16 slower than fp32, and one with
neither emulates it, so `auto` keeps fp32 there (benchmarks/throughput.py measures both). Where bf16 is
native, `auto` still keeps fp32 for an algorithm not shown to learn the same in bf16 (`Algorithm.bf16_parity`,
measured by benchmarks/precision_parity.py: IQL on Hopper scored 54 in bf16 against 34 in fp32).

Under autocast only the matmuls run in bf16: the network library casts every network output back to
fp32 (`robo_offline.algos.nets`), so Bellman targets, log-probabilities, CQL's logsumexp and every
loss are computed in fp32, and parameters and optimiser state stay fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    """What a run computes in (`fp32` | `bf16`) and why."""

    dtype: str
    reason: str

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def describe(self) -> str:
        return f"{self.dtype} ({self.reason})"


def cpu_has_amx() -> bool:
    """AMX tiles (Intel Sapphire Rapids and later): torch's own probe, else the kernel's CPU flags."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is not None:
        return bool(probe())
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and " amx_bf16" in cpuinfo.read_text()


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` multiplies bf16 natively, and the fact that decided it."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return major >= 8, f"CUDA compute capability {major}.{minor}" + ("" if major >= 8 else " < 8.0")
    if device.type == "cpu":
        return (True, "CPU with AMX") if cpu_has_amx() else (False, "CPU without AMX: bf16 would be slower")
    return False, f"no native bf16 known for {device.type}"


def resolve_precision(setting: str, device: torch.device, bf16_parity: bool = True) -> Precision:
    """`train.precision` on `device` for an algorithm that was (`bf16_parity`, `Algorithm.bf16_parity`) or was
    not shown to learn the same in bf16: `auto` picks bf16 exactly where it is native and parity holds."""
    if setting not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return Precision(setting, f"train.precision={setting}")
    native, why = native_bf16(device)
    if native and not bf16_parity:
        return Precision("fp32", f"auto: {why}, but this algorithm is not shown to learn the same in bf16")
    return Precision("bf16" if native else "fp32", f"auto: {why}")
