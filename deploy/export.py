"""Write a trained policy as a self-contained, verified deployment file.

Each written file is reloaded with `deploy.runtime.load_policy` and stepped through the
caller's check observations (plus a few NaN/inf/1e30 rows) next to the eager
`DeployedPolicy`, stateful filter included; a mismatch deletes the file and raises.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Dict, Iterable, Sequence, Union

import torch
from torch import Tensor, nn

from deploy.policy_module import DeployedPolicy, StatelessDeployedPolicy
from deploy.runtime import METADATA_FILE, LoadedPolicy, load_policy, quiet_torchscript_deprecation
from deploy.safety import INTERVENTION_KINDS, SafetyConfig
from deploy.units import EnvUnits

FORMAT_VERSION = 2  # 2: normaliser metadata without the 'enabled' flag (identity statistics instead)
SUFFIXES = {"torchscript": ".pt", "pt2": ".pt2"}
EXPORT_FORMATS = tuple(SUFFIXES)
ArrayLike = Union[Tensor, Sequence[float], Any]  # Any: numpy arrays, taken via torch.as_tensor


class ExportParityError(RuntimeError):
    """The reloaded file does not reproduce the eager policy."""


def export_policy(
    core: nn.Module,
    units: EnvUnits,
    *,
    safety: SafetyConfig,
    metadata: Dict[str, Any],
    path: Union[str, Path],
    check_observations: ArrayLike,
    formats: Iterable[str] = EXPORT_FORMATS,
    atol: float = 1e-5,
    last_action_input: bool = False,
) -> Dict[str, Path]:
    """Export `core` between its `units` (normaliser, action scaling) and the safety filter; return {format: file}.

    `core` maps normalised observations (B, obs_dim) to actions in [-1, 1]; `units` is the
    transform it was trained with (identity statistics if it had no normaliser). `metadata`
    (JSON-serialisable: algorithm, resolved training config, checkpoint hash, ...) is stored
    next to what this function adds (spaces, normaliser, safety config, versions, format).
    `path` is the file stem; suffixes `.pt` / `.pt2` are added. `check_observations`
    (N, obs_dim), e.g. 1000 random plus dataset observations, drive the parity check
    (max abs diff <= `atol`). `last_action_input`: the core was trained on observations followed by
    the last executed action (`units` then covers both); the file appends the filter's own.
    """
    formats = list(formats)
    unknown = [f for f in formats if f not in SUFFIXES]
    if unknown or not formats:
        raise ValueError(f"unknown export formats {unknown}; choose from {list(SUFFIXES)}")
    policy = build_deployed_policy(core, units, safety, last_action_input)
    observations = _with_adversarial_rows(_as_f32(check_observations, "check_observations"), policy.obs_dim)
    base = _stem(Path(path))
    base.parent.mkdir(parents=True, exist_ok=True)
    written: Dict[str, Path] = {}
    for fmt in formats:
        file = base.with_name(base.name + SUFFIXES[fmt])
        full = _full_metadata(policy, safety, metadata, fmt)
        write = _write_torchscript if fmt == "torchscript" else _write_pt2
        try:
            write(policy, file, json.dumps(full, allow_nan=False, sort_keys=True))
            try:
                verify_parity(load_policy(file), policy, observations, atol=atol)
            except ExportParityError:
                if not getattr(core, "argmax_over_candidates", False):
                    raise
                note = argmax_flips(load_policy(file), policy, observations, atol)  # raises past MAX_FLIPS
                write(policy, file, json.dumps({**full, "parity": note}, allow_nan=False, sort_keys=True))
                warnings.warn(f"{file}: {note['note']}", stacklevel=2)
        except BaseException:
            file.unlink(missing_ok=True)
            raise
        written[fmt] = file
    return written


def build_deployed_policy(
    core: nn.Module, units: EnvUnits, safety: SafetyConfig, last_action_input: bool = False
) -> DeployedPolicy:
    """Frozen, float32, eval-mode CPU copies of `core` and `units` inside a `DeployedPolicy`."""
    frozen = copy.deepcopy(core).to(device="cpu", dtype=torch.float32).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return DeployedPolicy(frozen, copy.deepcopy(units).cpu(), safety, last_action_input).eval()


def verify_parity(loaded: LoadedPolicy, reference: DeployedPolicy, observations: Tensor, atol: float = 1e-5) -> float:
    """Step both from reset through `observations`; raise `ExportParityError` on any mismatch."""
    loaded.reset()
    reference.reset()
    worst = 0.0
    with torch.no_grad():
        for i, obs in enumerate(observations):
            expected, got = reference(obs), loaded.act(obs)
            diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
            if not diff <= atol:  # also catches NaN
                reference.reset()
                raise ExportParityError(
                    f"{loaded.path}: reloaded policy differs from the eager policy at check observation {i} "
                    f"(max abs diff {diff:.3g} > {atol:g}); the file was removed"
                )
            worst = max(worst, diff)
    if loaded.interventions() != reference.safety.interventions():
        raise ExportParityError(
            f"{loaded.path}: safety intervention counts differ after the check sequence "
            f"({loaded.interventions()} vs eager {reference.safety.interventions()}); the file was removed"
        )
    loaded.reset()
    reference.reset()
    return worst


MAX_FLIPS = 0.01  # share of check observations on which an argmax policy's export may pick another candidate


def argmax_flips(loaded: LoadedPolicy, reference: DeployedPolicy, observations: Tensor, atol: float) -> Dict[str, Any]:
    """For a core that picks the best of several candidates (BCQ): compare each observation from a reset.

    A compiled file reorders float arithmetic by ~1e-7, which can flip a near-tie between candidates; the
    file is kept, with this note in its metadata, when at most `MAX_FLIPS` of the observations pick another
    candidate (and nothing else differs). Otherwise `ExportParityError`.
    """
    flips = 0
    with torch.no_grad():
        for obs in observations:
            loaded.reset()
            reference.reset()
            diff = (loaded.act(obs) - reference(obs)).abs().max().item()
            flips += not diff <= atol
    loaded.reset()
    reference.reset()
    n = len(observations)
    if flips > MAX_FLIPS * n:
        raise ExportParityError(
            f"{loaded.path}: {flips} of {n} check observations differ from the eager policy "
            f"(more than {MAX_FLIPS:.0%} argmax near-ties); the file was removed"
        )
    return {
        "argmax_flips": flips,
        "of": n,
        "note": f"{flips} of {n} check observations pick another candidate "
        "than the eager policy (argmax near-ties under the compiler's float reordering)",
    }


def _write_torchscript(policy: DeployedPolicy, file: Path, metadata_json: str) -> None:
    """`torch.jit.script`; a core that does not script is traced on its own and scripted around."""
    module = copy.deepcopy(policy)  # a script module shares its source's buffers
    with quiet_torchscript_deprecation():
        try:
            scripted = torch.jit.script(module)
        except Exception:  # noqa: BLE001 - TorchScript raises many types; tracing is the documented fallback
            example = torch.zeros(1, module.policy.units.obs_dim)  # the core's input: units' width
            module.policy.core = torch.jit.trace(module.policy.core, example)
            scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(file), _extra_files={METADATA_FILE: metadata_json})


def _write_pt2(policy: DeployedPolicy, file: Path, metadata_json: str) -> None:
    """`torch.export` of the explicit-state form, compiled and packaged by AOTInductor.

    The metadata goes in through `aot_inductor.metadata`, so it is readable from Python
    (`get_metadata()`) and from C++ (`AOTIModelPackageLoader::get_metadata()`); the dims
    are repeated as plain keys so a C++ caller can size the state without a JSON parser.
    Float semantics are pinned: no unsafe math (it could drop the NaN guard), no FMA contraction.
    """
    compiler = _inductor_compiler()
    if shutil.which(compiler) is None:
        raise RuntimeError(
            f"the .pt2 export compiles C++ with {compiler!r}, which is not on PATH; "
            "install a C++ compiler or export formats=('torchscript',)"
        )
    stateless = StatelessDeployedPolicy(copy.deepcopy(policy)).eval()
    example = (torch.zeros(policy.obs_dim), *stateless.initial_state())
    program = torch.export.export(stateless, example)
    package_metadata = {
        METADATA_FILE: metadata_json,
        "obs_dim": str(policy.obs_dim),
        "act_dim": str(policy.policy.units.act_dim),
        "num_intervention_kinds": str(len(INTERVENTION_KINDS)),
    }
    torch._inductor.aoti_compile_and_package(
        program,
        package_path=str(file),
        inductor_configs={
            "aot_inductor.metadata": package_metadata,
            "cpp.enable_unsafe_math_opt_flag": False,
            "cpp.enable_floating_point_contract_flag": "off",
        },
    )


def _full_metadata(policy: DeployedPolicy, safety: SafetyConfig, caller: Dict[str, Any], fmt: str) -> Dict[str, Any]:
    units = policy.policy.units
    ours: Dict[str, Any] = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "observation_space": {"shape": [policy.obs_dim], "dtype": "float32"},
        "policy_input": _policy_input(policy),
        "action_space": {
            "shape": [units.act_dim],
            "dtype": "float32",
            "low": units.action_low.tolist(),
            "high": units.action_high.tolist(),
        },
        "normalizer": {"mean": units.obs_mean.tolist(), "std": units.obs_std.tolist()},
        "safety": safety.to_dict(),
        "safety_intervention_kinds": list(INTERVENTION_KINDS),
        "interface": _interface(policy, fmt),
    }
    clash = sorted(set(caller) & set(ours))
    if clash:
        raise ValueError(f"metadata keys {clash} are written by export_policy itself; rename them")
    return {**caller, **ours}


def _policy_input(policy: DeployedPolicy) -> Dict[str, Any]:
    """What the network inside sees, in order: the caller's observation, then (optionally) the filter's state."""
    parts = [{"name": "observation", "slice": [0, policy.obs_dim], "source": "the caller"}]
    if policy.last_action_input:
        end = policy.obs_dim + policy.policy.units.act_dim
        parts.append(
            {
                "name": "last_action",
                "slice": [policy.obs_dim, end],
                "source": "the safety filter's previous output (safe_action after reset)",
            }
        )
    return {"parts": parts, "normalised_by": "normalizer (mean, std over all parts)"}


def _interface(policy: DeployedPolicy, fmt: str) -> Dict[str, Any]:
    if fmt == "torchscript":
        return {"forward": "forward(obs: f32[obs_dim]) -> f32[act_dim], stateful", "reset": "reset()"}
    return {
        "forward": "forward(obs: f32[obs_dim], prev_action: f32[act_dim], has_prev: bool[], "
        "intervention_counts: i64[kinds]) -> (action, prev_action, has_prev, intervention_counts)",
        "reset": "start again from the initial state",
        "initial_prev_action": policy.safety.safe_action.tolist(),
        "initial_has_prev": False,
    }


def _inductor_compiler() -> str:
    """The C++ compiler AOTInductor will call (`CXX` or g++ by default on Linux)."""
    configured = torch._inductor.config.cpp.cxx
    return next((c for c in configured if c), "g++") if isinstance(configured, tuple) else str(configured or "g++")


def _package_version() -> str:
    try:
        return package_metadata.version("robo-offline")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def _as_f32(values: ArrayLike, name: str) -> Tensor:
    try:
        return torch.as_tensor(values).detach().to(device="cpu", dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be array-like numbers: {err}") from err


def _with_adversarial_rows(observations: Tensor, obs_dim: int) -> Tensor:
    """Append NaN / inf / 1e30 rows (then a normal one) so the non-finite guard is checked too."""
    if observations.ndim != 2 or observations.shape[1] != obs_dim or len(observations) == 0:
        raise ValueError(f"check_observations must have shape (N >= 1, {obs_dim}), got {tuple(observations.shape)}")
    bad = observations[:1].repeat(5, 1)
    bad[0, 0], bad[1, -1], bad[2, :], bad[3, :] = float("nan"), float("inf"), 1e30, -1e30
    return torch.cat([observations, bad])


def _stem(path: Path) -> Path:
    return path.with_suffix("") if path.suffix in SUFFIXES.values() else path
