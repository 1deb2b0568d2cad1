"""Configure and build the C++ `policy_runner` against the libtorch inside the torch wheel.

    python -m deploy.cpp_build            # -> deploy/cpp/build/policy_runner
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).resolve().parent / "cpp"
BUILD_DIR = SOURCE_DIR / "build"


def missing_build_tools() -> list[str]:
    """Names of the tools the build needs that are not on PATH (empty when it can build)."""
    compiler = os.environ.get("CXX", "c++")
    return [tool for tool in ("cmake", compiler) if shutil.which(tool) is None]


def build_policy_runner(build_dir: Path = BUILD_DIR, jobs: int = 1) -> Path:
    """Build (incrementally: a no-op when up to date) and return the executable's path."""
    missing = missing_build_tools()
    if missing:
        raise RuntimeError(f"cannot build policy_runner: {missing} not found on PATH")
    configure = [
        "cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
    ]
    for command in (configure, ["cmake", "--build", str(build_dir), "--parallel", str(jobs)]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return build_dir / "policy_runner"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    print(build_policy_runner(args.build_dir, args.jobs))


if __name__ == "__main__":
    main()
