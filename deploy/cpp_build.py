"""Configure and build the C++ `policy_runner` against the libtorch inside the torch wheel.

    python -m deploy.cpp_build            # prints the executable's path
    python -m deploy.cpp_build --build-dir build/policy_runner

The sources ship inside the package (deploy/cpp/). The default build directory is deploy/cpp/build
in a source checkout and the user's cache directory for an installed package (site-packages is
no place for build output).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import torch

SOURCE_DIR = Path(__file__).resolve().parent / "cpp"


def default_build_dir() -> Path:
    """deploy/cpp/build in a checkout; ~/.cache/robo-offline/policy_runner-torch<version> when installed."""
    if not any(part in ("site-packages", "dist-packages") for part in SOURCE_DIR.parts):
        return SOURCE_DIR / "build"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "robo-offline" / f"policy_runner-torch{torch.__version__}"


def missing_build_tools() -> list[str]:
    """Names of the tools the build needs that are not on PATH (empty when it can build)."""
    compiler = os.environ.get("CXX", "c++")
    return [tool for tool in ("cmake", compiler) if shutil.which(tool) is None]


def build_policy_runner(build_dir: Path | None = None, jobs: int = 1) -> Path:
    """Build (incrementally: a no-op when up to date) and return the executable's path."""
    build_dir = Path(build_dir) if build_dir is not None else default_build_dir()
    missing = missing_build_tools()
    if missing:
        raise RuntimeError(f"cannot build policy_runner: {missing} not found on PATH")
    configure = [
        "cmake",
        "-S",
        str(SOURCE_DIR),
        "-B",
        str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
    ]
    for command in (configure, ["cmake", "--build", str(build_dir), "--parallel", str(jobs)]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return build_dir / "policy_runner"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=None, help="default: see above")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    print(build_policy_runner(args.build_dir, args.jobs))


if __name__ == "__main__":
    main()
