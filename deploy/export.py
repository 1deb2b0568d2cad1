"""Write a trained policy as a self-contained, verified deployment file.

Each written file is reloaded with `deploy.runtime.load_policy` and stepped through the
caller's check observations (plus a few NaN/inf/1e30 rows) next to the eager
`DeployedPolicy`, stateful filter included; a mismatch deletes the file and raises.
"""

from __future__ import annotations

import copy
import json
import shutil
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from deploy.policy_module import DeployedPolicy, StatelessDeployedPolicy
from deploy.runtime import METADATA_FILE, LoadedPolicy, load_policy, quiet_torchscript_deprecation
from deploy.safety import INTERVENTION_KINDS, SafetyConfig

FORMAT_VERSION = 1
SUFFIXES = {"torchscript": ".pt", "pt2": ".pt2"}
ArrayLike = Union[Tensor, Sequence[float], Any]  # Any: numpy arrays, taken via torch.as_tensor


class ExportParityError(RuntimeError):
    """The reloaded file does not reproduce the eager policy."""


def export_policy(
    core: nn.Module,
    *,
    obs_mean: Optional[ArrayLike],
    obs_std: Optional[ArrayLike],
    action_low: ArrayLike,
    action_high: ArrayLike,
    safety: SafetyConfig,
    metadata: Dict[str, Any],
    path: Union[str, Path],
    check_observations: ArrayLike,
    formats: Iterable[str] = ("torchscript", "pt2"),
    normalized: bool = True,
    atol: float = 1e-5,
) -> Dict[str, Path]:
    """Export `core` wrapped in normaliser, action scaling and safety filter; return {format: file}.

    `core` maps normalised observations (B, obs_dim) to actions in [-1, 1]. `normalized`
    says whether it was trained on normalised observations: then `obs_mean`/`obs_std` are
    required, otherwise they must be None. `metadata` (JSON-serialisable: algorithm,
    resolved training config, checkpoint hash, ...) is stored next to what this function
    adds (spaces, normaliser, safety config, versions, format). `path` is the file stem;
    suffixes `.pt` / `.pt2` are added. `check_observations` (N, obs_dim), e.g. 1000 random
    plus dataset observations, drive the parity check (max abs diff <= `atol`).
    """
    formats = list(formats)
    unknown = [f for f in formats if f not in SUFFIXES]
    if unknown or not formats:
        raise ValueError(f"unknown export formats {unknown}; choose from {list(SUFFIXES)}")
    policy = build_deployed_policy(core, obs_mean, obs_std, action_low, action_high, safety, normalized)
    observations = _with_adversarial_rows(_as_f32(check_observations, "check_observations"), policy.obs_mean.numel())
    base = _stem(Path(path))
    base.parent.mkdir(parents=True, exist_ok=True)
    written: Dict[str, Path] = {}
    for fmt in formats:
        file = base.with_name(base.name + SUFFIXES[fmt])
        text = json.dumps(_full_metadata(policy, safety, normalized, metadata, fmt), allow_nan=False, sort_keys=True)
        try:
            (_write_torchscript if fmt == "torchscript" else _write_pt2)(policy, file, text)
            verify_parity(load_policy(file), policy, observations, atol=atol)
        except BaseException:
            file.unlink(missing_ok=True)
            raise
        written[fmt] = file
    return written


def build_deployed_policy(
    core: nn.Module,
    obs_mean: Optional[ArrayLike],
    obs_std: Optional[ArrayLike],
    action_low: ArrayLike,
    action_high: ArrayLike,
    safety: SafetyConfig,
    normalized: bool = True,
) -> DeployedPolicy:
    """A frozen, float32, eval-mode copy of `core` inside a `DeployedPolicy`."""
    if normalized and (obs_mean is None or obs_std is None):
        raise ValueError(
            "the policy was trained on normalised observations (normalized=True) but obs_mean/obs_std "
            "are missing; pass the training normaliser's statistics, or normalized=False if it had none"
        )
    if not normalized and (obs_mean is not None or obs_std is not None):
        raise ValueError("normalized=False but obs_mean/obs_std were given; say which one the policy was trained with")
    low, high = _as_f32(action_low, "action_low").flatten(), _as_f32(action_high, "action_high").flatten()
    if normalized:
        mean, std = _as_f32(obs_mean, "obs_mean").flatten(), _as_f32(obs_std, "obs_std").flatten()
    else:
        obs_dim = _infer_obs_dim(core)
        mean, std = torch.zeros(obs_dim), torch.ones(obs_dim)
    frozen = copy.deepcopy(core).to(device="cpu", dtype=torch.float32).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return DeployedPolicy(frozen, mean, std, low, high, safety).eval()


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


def _write_torchscript(policy: DeployedPolicy, file: Path, metadata_json: str) -> None:
    """`torch.jit.script`; a core that does not script is traced on its own and scripted around."""
    module = copy.deepcopy(policy)  # a script module shares its source's buffers
    with quiet_torchscript_deprecation():
        try:
            scripted = torch.jit.script(module)
        except Exception:  # noqa: BLE001 - TorchScript raises many types; tracing is the documented fallback
            example = torch.zeros(1, module.obs_mean.numel())
            module.core = torch.jit.trace(module.core, example)
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
        raise RuntimeError(f"the .pt2 export compiles C++ with {compiler!r}, which is not on PATH; "
                           "install a C++ compiler or export formats=('torchscript',)")
    stateless = StatelessDeployedPolicy(copy.deepcopy(policy)).eval()
    example = (torch.zeros(policy.obs_mean.numel()), *stateless.initial_state())
    program = torch.export.export(stateless, example)
    package_metadata = {
        METADATA_FILE: metadata_json,
        "obs_dim": str(policy.obs_mean.numel()),
        "act_dim": str(policy.action_centre.numel()),
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


def _full_metadata(
    policy: DeployedPolicy, safety: SafetyConfig, normalized: bool, caller: Dict[str, Any], fmt: str
) -> Dict[str, Any]:
    low = (policy.action_centre.double() - policy.action_half_range.double()).tolist()
    high = (policy.action_centre.double() + policy.action_half_range.double()).tolist()
    ours: Dict[str, Any] = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "package_version": _package_version(),
        "torch_version": torch.__version__,
        "observation_space": {"shape": [policy.obs_mean.numel()], "dtype": "float32"},
        "action_space": {"shape": [policy.action_centre.numel()], "dtype": "float32", "low": low, "high": high},
        "normalizer": {"enabled": normalized, "mean": policy.obs_mean.tolist(), "std": policy.obs_std.tolist()},
        "safety": safety.to_dict(),
        "safety_intervention_kinds": list(INTERVENTION_KINDS),
        "interface": _interface(policy, fmt),
    }
    clash = sorted(set(caller) & set(ours))
    if clash:
        raise ValueError(f"metadata keys {clash} are written by export_policy itself; rename them")
    return {**caller, **ours}


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


def _infer_obs_dim(core: nn.Module) -> int:
    """Input width of the first Linear layer; normalised-free policies need it for the identity normaliser."""
    for module in core.modules():
        if isinstance(module, nn.Linear):
            return module.in_features
    raise ValueError(
        "normalized=False: cannot infer obs_dim from the core; export with normalized=True, obs_mean=0, obs_std=1"
    )
