"""Safety limits read from the MuJoCo model: bounds, driven joints and their ranges, the control period; a YAML
may tighten them and is refused where it would loosen one."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from deploy.safety import SafetyConfig
from sim.envs import make_env
from sim.model_limits import ModelLimits, SafetyLimitError, with_model_limits
from sim.wrappers import SafetyFilterWrapper

ARM = """
<mujoco>
  <compiler angle="radian"/>
  <option timestep="0.004"/>
  <worldbody>
    <body name="a">
      <joint name="limited" type="hinge" axis="0 1 0" range="-1 0.5" limited="true"/>
      <geom type="capsule" size="0.05" fromto="0 0 0 0 0 -0.3"/>
      <body name="b" pos="0 0 -0.3">
        <joint name="free" type="hinge" axis="0 1 0"/>
        <geom type="capsule" size="0.05" fromto="0 0 0 0 0 -0.3"/>
        <body name="c" pos="0 0 -0.3">
          <joint name="slider" type="slide" axis="1 0 0" range="-0.2 0.3" limited="true"/>
          <geom size="0.05"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="limited" ctrlrange="-2 2" ctrllimited="true"/>
    <motor joint="free" ctrlrange="-5 5" ctrllimited="true" gear="10" forcerange="-20 20" forcelimited="true"/>
    <position joint="slider" kp="50" ctrlrange="-0.5 0.25" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


def test_limits_of_a_model_with_limited_and_unlimited_joints_torque_and_position_actuators():
    limits = ModelLimits.of(mujoco.MjModel.from_xml_string(ARM), frame_skip=3)
    assert limits.action_low == [-2.0, -2.0, -0.2]  # motor 2: force range 20 / gear 10; servo: the slider's range
    assert limits.action_high == [2.0, 2.0, 0.25]  # servo: its own ctrlrange is tighter than the slider's range
    assert limits.joint_actions == [0]  # the torque on a limited joint (the free hinge has none; a servo is bounded)
    assert (limits.joint_lower, limits.joint_upper) == ([-1.0], [0.5])
    assert limits.control_period == pytest.approx(0.012)


def _pusher(**yaml) -> SafetyConfig:
    env = make_env("Pusher-v5")
    try:
        return with_model_limits(SafetyConfig(**yaml), env)
    finally:
        env.close()


def test_the_builtin_pusher_filter_takes_its_numbers_from_the_model(pusher_safety):
    model = make_env("Pusher-v5").unwrapped.model
    assert pusher_safety.action_low == model.actuator_ctrlrange[:, 0].tolist()
    assert pusher_safety.action_high == model.actuator_ctrlrange[:, 1].tolist()
    driven = model.actuator_trnid[:, 0]
    assert pusher_safety.joint_action_indices == list(range(7))
    np.testing.assert_array_equal(pusher_safety.joint_lower, model.jnt_range[driven, 0])
    np.testing.assert_array_equal(pusher_safety.joint_upper, model.jnt_range[driven, 1])
    assert pusher_safety.control_period == pytest.approx(model.opt.timestep * 5)
    assert pusher_safety.max_delta == [1.0] * 7  # from the YAML: what the model cannot say


def test_a_yaml_may_tighten_a_model_limit():
    tight = _pusher(
        action_low=[-1.0] * 7,
        action_high=[1.5] * 7,
        joint_pos_indices=list(range(7)),
        joint_vel_indices=list(range(7, 14)),
        joint_upper=[1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0],
    )
    assert tight.action_low == [-1.0] * 7 and tight.joint_upper[0] == 1.0
    assert tight.joint_lower[0] == pytest.approx(-2.2854)  # not given: the model's


@pytest.mark.parametrize(
    "yaml, field",
    [
        ({"action_high": [2.5] + [2.0] * 6, "action_low": [-2.0] * 7}, "action_high"),
        (
            {
                "joint_pos_indices": list(range(7)),
                "joint_vel_indices": list(range(7, 14)),
                "joint_lower": [-3.0] + [-0.5236, -1.5, -2.3213, -1.5, -1.094, -1.5],
            },
            "joint_lower",
        ),
        ({"control_period": 0.02}, "control_period"),
        ({"joint_pos_indices": [0], "joint_vel_indices": [7], "joint_action_indices": [9]}, "joint_action_indices"),
    ],
    ids=["looser-action-bound", "looser-joint-range", "other-control-period", "not-a-driven-joint"],
)
def test_a_yaml_that_loosens_a_model_limit_is_refused_naming_the_field(yaml, field):
    with pytest.raises(SafetyLimitError, match=field):
        _pusher(**yaml)


def test_the_simulation_filter_is_completed_from_the_model_and_refuses_a_looser_one(pusher_safety):
    partial = SafetyConfig(max_delta=[1.0] * 7, joint_pos_indices=list(range(7)), joint_vel_indices=list(range(7, 14)))
    wrapped = SafetyFilterWrapper(make_env("Pusher-v5"), partial)
    assert wrapped.safety_filter.config == pusher_safety
    looser = dataclasses.replace(partial, action_low=[-3.0] * 7, action_high=[3.0] * 7)
    with pytest.raises(SafetyLimitError, match="action_low"):
        SafetyFilterWrapper(make_env("Pusher-v5"), looser)
