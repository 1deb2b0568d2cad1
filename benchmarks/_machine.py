"""The machine line every benchmark prints beside its table (CPU model and the ISA that matters, versions)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from robo_offline.algos import ALGORITHMS
from robo_offline.training.precision import Precision, resolve_precision


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    isa = [name for name in ("avx512f", "avx512_bf16", "amx_bf16") if f" {name}" in info]
    cores = torch.get_num_threads()
    auto = resolve_precision("auto", torch.device("cpu"))
    if auto.dtype == "bf16":
        same = sorted(name for name, cls in ALGORITHMS.items() if cls.bf16_parity)
        auto = Precision("bf16", f"{auto.reason}; for {', '.join(same)}; fp32 for the rest")
    return (
        f"{model} ({', '.join(isa) or 'no AVX-512/AMX'}; torch kernels {torch.backends.cpu.get_cpu_capability()}), "
        f"torch threads {cores}, train.precision=auto -> {auto.describe()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
