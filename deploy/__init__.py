"""Deployment: safety filter, export to TorchScript / AOTInductor, and a torch-only runtime.

Depends on torch alone (no gymnasium, mujoco, omegaconf or robo_offline imports), so a
robot computer needs nothing else to run an exported policy.
"""

from deploy.export import ExportParityError, export_policy
from deploy.policy_module import DeployedPolicy, EnvPolicy
from deploy.runtime import LoadedPolicy, load_policy
from deploy.safety import INTERVENTION_KINDS, SafetyConfig, SafetyFilter
from deploy.units import EnvUnits

__all__ = [
    "INTERVENTION_KINDS",
    "DeployedPolicy",
    "EnvPolicy",
    "EnvUnits",
    "ExportParityError",
    "LoadedPolicy",
    "SafetyConfig",
    "SafetyFilter",
    "export_policy",
    "load_policy",
]
