"""Safety limits read from the MuJoCo model, so a filter's numbers are never copied by hand.

The model says: each actuator's command range (`actuator_ctrlrange`, narrowed by `actuator_forcerange`
over the gear where a motor maps its command to a force), which joint each actuator drives
(`actuator_trnid`) and that joint's range (`jnt_range`), and the control period (`timestep` x
`frame_skip`). A safety YAML adds what the model cannot say: the rate limit, the safe action, where the
driven joints' positions and velocities sit in the observation, and tighter bounds. It may tighten a
model limit, never loosen it: a looser value is refused with the field named.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from deploy.safety import SafetyConfig


class SafetyLimitError(ValueError):
    """A safety YAML asks for more than the robot's model allows."""


@dataclass(frozen=True)
class ModelLimits:
    """What a MuJoCo model fixes about commanding it."""

    action_low: list[float]
    action_high: list[float]
    joint_actions: list[int]  # action dims driving a limited hinge/slide joint with a positive gear
    joint_lower: list[float]  # that joint's range, in the same order
    joint_upper: list[float]
    control_period: float

    @classmethod
    def of(cls, model: mujoco.MjModel, frame_skip: int) -> ModelLimits:
        low, high = [], []
        joint_actions, joint_lower, joint_upper = [], [], []
        for a in range(model.nu):
            lo, hi = _command_range(model, a)
            joint, gear = int(model.actuator_trnid[a, 0]), float(model.actuator_gear[a, 0])
            drives_joint = int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
            if drives_joint and _limited_slide_or_hinge(model, joint) and gear > 0:
                j_lo, j_hi = (float(x) for x in model.jnt_range[joint])
                if _is_motor(model, a):  # a torque: the filter's lookahead stops pushing at the joint's range
                    joint_actions.append(a)
                    joint_lower.append(j_lo)
                    joint_upper.append(j_hi)
                elif _is_servo(model, a):  # a position target: never beyond the joint's range
                    lo, hi = max(lo, j_lo / gear), min(hi, j_hi / gear)
            low.append(lo)
            high.append(hi)
        period = float(model.opt.timestep) * int(frame_skip)
        return cls(low, high, joint_actions, joint_lower, joint_upper, period)

    @classmethod
    def of_env(cls, env: gym.Env) -> ModelLimits | None:
        """The limits of a gymnasium MuJoCo env's model; None for other envs."""
        base = env.unwrapped
        model = getattr(base, "model", None)
        if not isinstance(model, mujoco.MjModel):
            return None
        return cls.of(model, int(getattr(base, "frame_skip", 1)))


def with_model_limits(config: SafetyConfig, env: gym.Env) -> SafetyConfig:
    """`config` completed from the env's model (bounds, joint limits, control period; tightened where the
    config says so), or from its action space for envs without a MuJoCo model."""
    limits = ModelLimits.of_env(env)
    if limits is None:
        return _with_action_space(config, env.action_space)
    low, high = _tightened("action", config.action_low, config.action_high, limits.action_low, limits.action_high)
    space_low, space_high = np.asarray(env.action_space.low, float), np.asarray(env.action_space.high, float)
    low = [max(x, float(s)) for x, s in zip(low, space_low)]  # the env may clip further than its model
    high = [min(x, float(s)) for x, s in zip(high, space_high)]
    resolved = dataclasses.replace(config, action_low=low, action_high=high)
    if config.control_period is not None and not math.isclose(config.control_period, limits.control_period):
        raise SafetyLimitError(
            f"safety config: control_period {config.control_period} differs from the model's "
            f"{limits.control_period} (timestep x frame_skip); leave it out"
        )
    if config.joint_pos_indices is None:  # no observation layout given: no joint-limit lookahead
        return resolved
    actions = config.joint_action_indices if config.joint_action_indices is not None else limits.joint_actions
    unknown = [a for a in actions if a not in limits.joint_actions]
    if unknown:
        raise SafetyLimitError(
            f"safety config: joint_action_indices {unknown} do not drive a limited joint in the model "
            f"(those that do: {limits.joint_actions})"
        )
    order = [limits.joint_actions.index(a) for a in actions]
    joint_lower, joint_upper = _tightened(
        "joint",
        config.joint_lower,
        config.joint_upper,
        [limits.joint_lower[i] for i in order],
        [limits.joint_upper[i] for i in order],
    )
    return dataclasses.replace(
        resolved,
        joint_action_indices=list(actions),
        joint_lower=joint_lower,
        joint_upper=joint_upper,
        control_period=limits.control_period,
    )


def _tightened(
    kind: str, low: list[float] | None, high: list[float] | None, model_low: list[float], model_high: list[float]
) -> tuple[list[float], list[float]]:
    """The config's bounds where given (each inside the model's), else the model's."""
    resolved = []
    for side, given, model, inside in (
        ("lower" if kind == "joint" else "low", low, model_low, lambda x, m: x >= m - 1e-9),
        ("upper" if kind == "joint" else "high", high, model_high, lambda x, m: x <= m + 1e-9),
    ):
        name = f"{kind}_{side}"
        if not given:
            resolved.append([float(m) for m in model])
            continue
        if len(given) != len(model):
            raise SafetyLimitError(f"safety config: {name} has {len(given)} entries, the model has {len(model)}")
        looser = [i for i, (x, m) in enumerate(zip(given, model)) if not inside(x, m)]
        if looser:
            raise SafetyLimitError(
                f"safety config: {name} loosens the model's limit at index {looser} "
                f"({[given[i] for i in looser]} vs the model's {[model[i] for i in looser]}); it may only tighten"
            )
        resolved.append([float(x) for x in given])
    return resolved[0], resolved[1]


def _command_range(model: mujoco.MjModel, a: int) -> tuple[float, float]:
    """The actuator's control range, narrowed to its force range where a motor turns control into force."""
    lo, hi = model.actuator_ctrlrange[a] if model.actuator_ctrllimited[a] else (-math.inf, math.inf)
    gain = float(model.actuator_gainprm[a, 0]) * float(model.actuator_gear[a, 0])  # a motor's force = gain x ctrl
    if model.actuator_forcelimited[a] and _is_motor(model, a) and gain != 0.0:
        f_lo, f_hi = sorted(float(f) / gain for f in model.actuator_forcerange[a])
        lo, hi = max(lo, f_lo), min(hi, f_hi)
    return float(lo), float(hi)


def _is_motor(model: mujoco.MjModel, a: int) -> bool:
    """Force proportional to the command (`<motor>`, or `<general>` set up like one)."""
    return (
        int(model.actuator_dyntype[a]) == int(mujoco.mjtDyn.mjDYN_NONE)
        and int(model.actuator_gaintype[a]) == int(mujoco.mjtGain.mjGAIN_FIXED)
        and int(model.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_NONE)
    )


def _is_servo(model: mujoco.MjModel, a: int) -> bool:
    """A position servo (`<position>`): the command is a joint target, force = kp (ctrl - q) - kv qdot."""
    return int(model.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_AFFINE) and model.actuator_biasprm[a, 1] < 0


def _limited_slide_or_hinge(model: mujoco.MjModel, joint: int) -> bool:
    kinds = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    return 0 <= joint < model.njnt and bool(model.jnt_limited[joint]) and int(model.jnt_type[joint]) in kinds


def _with_action_space(config: SafetyConfig, action_space: gym.Space) -> SafetyConfig:
    """A config without bounds takes the environment's action bounds (the least a filter must enforce)."""
    if config.action_low or config.action_high:
        return config
    low = [float(x) for x in np.asarray(action_space.low, dtype=np.float64).reshape(-1)]
    high = [float(x) for x in np.asarray(action_space.high, dtype=np.float64).reshape(-1)]
    return dataclasses.replace(config, action_low=low, action_high=high)
