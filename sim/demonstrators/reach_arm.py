"""Scripted demonstrator for the example arm (`robo_offline/ReachArm-v0`): resolved-rate control of the fingertip.

A feedback law of the observation alone (joint positions and velocities, fingertip and goal positions):
the fingertip is driven towards the goal at a capped speed through the damped pseudo-inverse of its
Jacobian, the redundant joint keeps a bent posture in the null space, and a joint-velocity servo turns
that into torques. It is smooth in the observation and holds no plan, so behaviour cloning can imitate it.
Lower qualities add the same kinds of sloppiness as the Pusher demonstrator: Gaussian torque noise and
bursts of held random torques, and a softer gain.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np

from sim.demonstrators.pusher import full_mass_matrix
from sim.demonstrators.sloppiness import Sloppiness, SloppyActions

ARM_JOINTS = ("shoulder", "elbow", "wrist")
OBS_Q, OBS_QD, OBS_TIP, OBS_GOAL = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)
POSTURE = np.array([0.0, 0.9, 0.6])  # a bent elbow and wrist: away from the stretched-out singularity


class ReachArmDemonstrator:
    """`demo(obs) -> normalised torques`; `demo.reset(seed)` at each episode start (seeds the sloppiness)."""

    def __init__(
        self,
        env: gym.Env,
        quality: float | str = "expert",
        seed: int | None = None,
        position_gain: float = 8.0,
        max_speed: float = 0.5,
        time_constant: float = 0.15,
    ) -> None:
        base = env.unwrapped
        self.model, self.data = base.model, mujoco.MjData(base.model)
        self.site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "fingertip")
        self.qpos_adr = [int(self.model.jnt_qposadr[self.model.joint(j).id]) for j in ARM_JOINTS]
        self.dof_adr = [int(self.model.jnt_dofadr[self.model.joint(j).id]) for j in ARM_JOINTS]
        self.gear = self.model.actuator_gear[:, 0].copy()
        self.damping = self.model.dof_damping[self.dof_adr].copy()
        self.low, self.high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
        self.sloppiness = Sloppiness.at(quality)
        self.position_gain = position_gain * self.sloppiness.gain_scale
        self.max_speed, self.time_constant = max_speed, time_constant
        self._jac, self._mass = np.zeros((3, self.model.nv)), np.zeros((self.model.nv, self.model.nv))
        noise = self.sloppiness.action_noise * (self.high - self.low) / 2  # a fraction of the half-range
        self._sloppy = SloppyActions(self.sloppiness, self.low, self.high, noise, seed)

    @property
    def quality(self) -> float:
        return self.sloppiness.quality

    def reset(self, seed: int | None = None) -> None:
        self._sloppy.reset(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        return self._sloppy(self._expert(obs)).astype(np.float32)

    def _expert(self, obs: np.ndarray) -> np.ndarray:
        q, qd = obs[OBS_Q], obs[OBS_QD]
        error = (obs[OBS_GOAL] - obs[OBS_TIP])[:2]
        velocity = self.position_gain * error
        speed = np.linalg.norm(velocity)
        if speed > self.max_speed:
            velocity *= self.max_speed / speed
        jac, mass = self._kinematics(q, qd)
        pinv = jac.T @ np.linalg.inv(jac @ jac.T + 1e-3 * np.eye(2))
        null = np.eye(3) - pinv @ jac
        dq = pinv @ velocity + null @ (POSTURE - q)
        # joint-velocity servo, inertia-scaled so it settles in `time_constant` (a few control periods)
        torque = mass @ (dq - qd) / self.time_constant + self.data.qfrc_bias[self.dof_adr] + self.damping * dq
        return np.clip(torque / self.gear, self.low, self.high)

    def _kinematics(self, q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d(fingertip xy)/dq and the arm's joint-space inertia at (q, qd), from the model."""
        self.data.qpos[self.qpos_adr], self.data.qvel[self.dof_adr] = q, qd
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_jacSite(self.model, self.data, self._jac, None, self.site)
        full_mass_matrix(self.model, self.data, self._mass)
        return self._jac[:2, self.dof_adr], self._mass[np.ix_(self.dof_adr, self.dof_adr)]
