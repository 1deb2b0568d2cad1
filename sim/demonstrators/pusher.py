"""Scripted demonstrator for Pusher-v5, driven by MuJoCo's own kinematics of the arm.

Why it pushes with the claw's inside corner (all measured in this environment):

* The puck is nearly massless (density 0.01) and MuJoCo softens each contact by the body's mass, so a
  contact barely pushes: the puck slides at ~1 m/s per metre that the claw presses *into* it and stops when
  released. A fingertip or Jacobian-transpose push passes straight through it; a push must hold a controlled
  penetration of a few centimetres, and at most ~6 cm/s of puck speed is available.
* Only the claw collides (three capsules forming a U on the last link). Its inner corner, crossbar plus one
  prong, holds the puck from two sides at 45 degrees: twice the pressing area of one capsule, self-centring,
  and tolerant of deep presses. That is what fits approach and push into a 5 s episode.
* The elbow folds only upwards, so many corner poses near the base are out of reach. Each approach is
  therefore planned by a multi-start inverse kinematics over the four ways of holding the corner, flown in
  joint space above the puck, lowered behind it, and pushed to the goal with operational-space control
  (gravity/bias compensation from `qfrc_bias`, joint damping, a null-space posture). If the puck slips out of
  the corner the claw lifts and re-plans from where the puck now is.

Lower qualities add Gaussian torque noise, bursts of held random torques and softer, shallower pushing, for
demonstrations of mixed quality.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from sim.demonstrators.sloppiness import Sloppiness, SloppyActions

# --- Pusher-v5 layout (gymnasium's pusher_v5.xml) --------------------------------------------------------
ARM_DOF = 7
OBS_QPOS, OBS_QVEL = slice(0, 7), slice(7, 14)
OBS_PUCK_XY, OBS_GOAL_XY = slice(17, 19), slice(20, 22)
CLAW_BODY = "tips_arm"  # the claw capsules sit on this frame (the wrist-roll link)
PUCK_RADIUS = 0.05
CLAW_CAPSULE_RADIUS = 0.02
CLAW_HALF_SPAN = 0.10  # crossbar half-length: the prongs sit at local y = +-0.1
PRONG_REACH = 0.13  # prong length plus capsule cap, measured from the corner along local x
CROSSBAR_REACH = 0.20  # crossbar length from the corner along local y
NEST_DISTANCE = (PUCK_RADIUS + CLAW_CAPSULE_RADIUS) * np.sqrt(2)  # corner to puck centre, both walls touching

# --- heights (table top at z = -0.325, puck spans -0.325..-0.225) -----------------------------------------
PUSH_HEIGHT = -0.27  # claw at the puck's mid-height
HOVER_HEIGHT = -0.20  # claw just clear of the puck's top: approach and lift altitude
PUSH_SWITCH_HEIGHT = PUSH_HEIGHT + 0.04  # low enough to start pressing
PRE_PUSH_GAP = 0.005  # how far short of touching the puck the descent aims


@dataclass(frozen=True)
class Gains:
    """Controller settings, tuned on seeded episodes with benchmarks/demonstrator_quality.py."""

    position: float = 6.0  # 1/s, operational-space position gain
    orientation: float = 5.0  # 1/s
    max_speed: float = 0.8  # m/s, claw speed while lifting
    push_speed: float = 0.2  # m/s, claw speed cap while pushing (the puck cannot follow faster)
    press_depth: float = 0.063  # m, wall penetration aimed for (the puck's speed grows with it)
    velocity_time_constant: float = 0.1  # s, joint-velocity servo
    joint_gain: float = 8.0  # 1/s, joint-space flight
    max_joint_speed: float = 5.0  # rad/s
    tilt_weight: float = 0.15  # how much claw tilt matters against position (per radian vs metre)
    yaw_weight: float = 0.3
    yaw_tolerance: float = np.radians(35)  # corner yaw error tolerated almost for free: widens the reach
    escape_clearance: float = 0.003  # m: a wall axis this close to the puck centre is about to pass it
    max_misalignment: float = np.radians(50)  # corner bisector this far off the push direction: the puck is lost
    hover_tolerance: float = 0.5  # rad: start descending once this close to the hover pose
    capture_radius: float = 0.04  # m: a claw this close (in the plane) to the pre-push point is behind the puck
    reach_tolerance: float = 0.05  # weighted IK residual under which a grip's pre-push pose counts as reachable
    screen_tolerance: float = 0.3  # residual after the short screening solve above which a start is dropped


class Phase(enum.Enum):
    REACH = "reach"  # joint-space flight to above the pre-push pose
    DESCEND = "descend"  # joint-space drop behind the puck
    PUSH = "push"  # operational-space pressing towards the goal
    LIFT = "lift"  # puck escaped: rise straight up, then re-plan


@dataclass(frozen=True)
class CornerGrip:
    """One way to hold the corner: which prong forms it and whether the claw faces up or down."""

    side: int  # +1 / -1: the prong at local y = side * 0.1
    flip: int  # +1 claw's local z up, -1 down (a different joint-space branch of the same contact)

    @property
    def corner_offset(self) -> np.ndarray:
        return np.array([0.0, self.side * CLAW_HALF_SPAN, 0.0])

    def frame(self, push_dir: np.ndarray) -> np.ndarray:
        """Claw orientation whose corner bisector points along the horizontal `push_dir`."""
        return self._frame_at(math.atan2(push_dir[1], push_dir[0]))

    def _frame_at(self, heading: float) -> np.ndarray:
        """Claw orientation whose corner bisector points at the horizontal angle `heading`."""
        a = heading + math.pi / 4 * self.side * self.flip
        c, s, z = math.cos(a), math.sin(a), float(self.flip)
        return np.array([[c, -z * s, 0.0], [s, z * c, 0.0], [0.0, 0.0, z]])

    def bisector(self, rot: np.ndarray) -> np.ndarray:
        """Horizontal direction the corner opens towards (where the puck sits)."""
        b = (rot[:, 0] - self.side * rot[:, 1])[:2]
        return b / max(np.linalg.norm(b), 1e-9)

    def walls(self, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Horizontal unit directions of the prong and of the crossbar, leaving the corner."""
        prong, crossbar = rot[:2, 0], -self.side * rot[:2, 1]
        return prong / max(np.linalg.norm(prong), 1e-9), crossbar / max(np.linalg.norm(crossbar), 1e-9)

    def target_frame(self, rot: np.ndarray, push_dir: np.ndarray, yaw_tolerance: float) -> np.ndarray:
        """Desired frame: yaw errors within the tolerance are pulled back only gently (reach matters more)."""
        bx, by = rot[0, 0] - self.side * rot[0, 1], rot[1, 0] - self.side * rot[1, 1]  # unnormalised bisector
        ux, uy = float(push_dir[0]), float(push_dir[1])
        yaw = math.atan2(ux * by - uy * bx, ux * bx + uy * by)
        inside = min(max(yaw, -yaw_tolerance), yaw_tolerance)
        return self._frame_at(math.atan2(uy, ux) + 0.75 * inside)


@dataclass(frozen=True)
class IkBudget:
    """Iterations per IK solve when planning: a short screen of each start, then the refinement of those kept."""

    screen: int = 8
    pre_push: int = 40
    end_of_push: int = 30
    hover: int = 20


# In the planner's order of preference (the two claw-down grips cover most scenes).
GRIPS = (CornerGrip(-1, -1), CornerGrip(1, -1), CornerGrip(-1, 1), CornerGrip(1, 1))
HOME = np.zeros(ARM_DOF)  # the arm's posture at reset (Pusher-v5 adds at most 0.005 rad of noise)
# IK starting postures that, with the current one, cover the reachable corner poses (found by random restarts).
IK_SEEDS = (
    np.array([0.0, 0.5, 0.0, -1.0, 0.0, -0.5, 0.0]),
    np.array([1.6, 1.1, 1.1, -1.7, 1.4, -1.0, 1.2]),
    np.array([0.2, 1.1, -1.3, -1.7, -1.4, -0.65, -1.15]),
    np.array([0.3, 0.3, -1.0, -0.5, 1.0, -0.5, 0.0]),
)


def signed_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle from 2-D vector a to b, counter-clockwise positive."""
    return float(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b))


def orientation_error(rot: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-frame rotation vector (small-angle) taking `rot` to `target`: 0.5 * sum_i r_i x t_i."""
    n = rot @ target.T
    return 0.5 * np.array([n[1, 2] - n[2, 1], n[2, 0] - n[0, 2], n[0, 1] - n[1, 0]])


def limited_dls_step(
    jac: np.ndarray,
    err: np.ndarray,
    q: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    damping: float,
    max_step: float = 0.3,
) -> np.ndarray:
    """Damped least-squares joint step that hands the task to the joints not pinned at a limit."""
    regulariser = damping * np.eye(jac.shape[0])
    jf = jac
    for _ in range(3):
        dq = jf.T @ np.linalg.solve(jf @ jf.T + regulariser, err)
        biggest = np.abs(dq).max()
        if biggest > max_step:
            dq *= max_step / biggest
        pinned = ((q >= upper - 1e-6) & (dq > 0)) | ((q <= lower + 1e-6) & (dq < 0))
        if not pinned.any():
            break
        jf = jf * ~pinned
    return np.minimum(np.maximum(q + dq, lower), upper) - q


def full_mass_matrix(model: mujoco.MjModel, data: mujoco.MjData, out: np.ndarray) -> np.ndarray:
    try:  # MuJoCo >= 3.3: (model, data, dst)
        mujoco.mj_fullM(model, data, out)
    except TypeError:  # older: (model, dst, qM)
        mujoco.mj_fullM(model, out, data.qM)
    return out


class ArmModel:
    """Kinematics and dynamics of the arm on private MjData copies (the env's own data is never touched)."""

    def __init__(self, model: mujoco.MjModel, dt: float) -> None:
        self.model, self.dt = model, dt
        self.data, self.scratch = mujoco.MjData(model), mujoco.MjData(model)
        self.body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, CLAW_BODY)
        self.lower, self.upper = model.jnt_range[:ARM_DOF, 0].copy(), model.jnt_range[:ARM_DOF, 1].copy()
        self.damping = model.dof_damping[:ARM_DOF].copy()
        self._jp, self._jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        self._jac = np.zeros((6, ARM_DOF))
        self._mass = np.zeros((model.nv, model.nv))

    def set_state(self, q: np.ndarray, qd: np.ndarray) -> None:
        self.data.qpos[:ARM_DOF], self.data.qvel[:ARM_DOF] = q, qd
        mujoco.mj_forward(self.model, self.data)

    def corner(self, grip: CornerGrip, data: mujoco.MjData | None = None) -> tuple[np.ndarray, np.ndarray]:
        """World position of the grip's corner and the claw's rotation matrix."""
        data = self.data if data is None else data
        rot = data.xmat[self.body].reshape(3, 3).copy()
        return data.xpos[self.body] + rot @ grip.corner_offset, rot

    def jacobian(self, point: np.ndarray, data: mujoco.MjData | None = None) -> np.ndarray:
        """6 x 7: linear velocity of `point` (on the claw) over angular velocity of the claw."""
        mujoco.mj_jac(self.model, self.data if data is None else data, self._jp, self._jr, point, self.body)
        self._jac[:3], self._jac[3:] = self._jp[:, :ARM_DOF], self._jr[:, :ARM_DOF]
        return self._jac

    def torque_for(self, dq_des: np.ndarray, qd: np.ndarray, time_constant: float) -> np.ndarray:
        """Joint-velocity servo: inertia-scaled correction + Coriolis/bias + damping feed-forward."""
        mass = full_mass_matrix(self.model, self.data, self._mass)[:ARM_DOF, :ARM_DOF]
        return mass @ (dq_des - qd) / time_constant + self.data.qfrc_bias[:ARM_DOF] + self.damping * dq_des

    def solve_ik(
        self,
        q0: np.ndarray,
        target: np.ndarray,
        push_dir: np.ndarray,
        grip: CornerGrip,
        weights: np.ndarray,
        yaw_tolerance: float,
        iters: int,
        margin: float = 0.08,
    ) -> tuple[np.ndarray, float]:
        """Weighted corner pose IK (keeps `margin` rad from joint limits); returns (q, weighted residual)."""
        lower, upper = self.lower + margin, self.upper - margin
        q, err = np.array(q0, dtype=np.float64), np.zeros(6)
        for _ in range(iters):
            self.scratch.qpos[:ARM_DOF] = q
            mujoco.mj_kinematics(self.model, self.scratch)
            mujoco.mj_comPos(self.model, self.scratch)
            corner, rot = self.corner(grip, self.scratch)
            goal_rot = grip.target_frame(rot, push_dir, yaw_tolerance)
            err = weights * np.concatenate([target - corner, orientation_error(rot, goal_rot)])
            jac = weights[:, None] * self.jacobian(corner, self.scratch)
            q = q + limited_dls_step(jac, 0.8 * err, q, lower, upper, 1e-4)
        return q, float(np.linalg.norm(err))


@dataclass(frozen=True)
class PushPlan:
    grip: CornerGrip
    q_hover: np.ndarray  # above the pre-push pose
    q_pre: np.ndarray  # corner just behind the puck
    q_end: np.ndarray  # posture near the end of the push (null-space target while pushing)


class PusherDemonstrator:
    """Pusher-v5 demonstrator: `demo(obs) -> torques`, `demo.reset(seed)` at each episode start.

    A feedback controller: every step it re-decides from the observation alone what to do (fly above the
    pre-push pose, descend behind the puck, push, or lift after losing the puck), so the expert's command
    is a function of what a policy sees (`tests/sim/test_pusher_demonstrator.py` replays it to a fresh
    instance). The phase is read off the geometry of claw, puck and goal; the approach plan is a function
    of puck and goal (cached per episode, recomputed when they move). `quality` is "expert", "medium",
    "poor" or a number in [0, 1]; `seed` drives the sloppiness noise, the only state kept between steps.
    The env is used for its MuJoCo model (kinematics) alone.
    """

    def __init__(
        self,
        env: gym.Env,
        quality: float | str = "expert",
        seed: int | None = None,
        gains: Gains | None = None,
        ik_budget: IkBudget | None = None,
    ) -> None:
        base = env.unwrapped
        if not hasattr(base, "model") or mujoco.mj_name2id(base.model, mujoco.mjtObj.mjOBJ_BODY, CLAW_BODY) < 0:
            raise ValueError(f"PusherDemonstrator needs a Pusher MuJoCo env, got {env.spec.id if env.spec else env}")
        self.sloppiness = Sloppiness.at(quality)
        gains = gains or Gains()
        self.gains = dataclasses.replace(
            gains,
            position=gains.position * self.sloppiness.gain_scale,
            press_depth=gains.press_depth * self.sloppiness.press_scale,
        )
        self.ik_budget = ik_budget or IkBudget()
        self.arm = ArmModel(base.model, float(base.dt))
        self.action_space = env.action_space
        self._weights = np.array([1.0, 1.0, 1.0, self.gains.tilt_weight, self.gains.tilt_weight, self.gains.yaw_weight])
        space = env.action_space  # noise std: Sloppiness.action_noise in N m
        self._sloppy = SloppyActions(self.sloppiness, space.low, space.high, self.sloppiness.action_noise, seed)
        self._plans: dict[bytes, PushPlan] = {}
        self.reset(seed)

    @property
    def quality(self) -> float:
        return self.sloppiness.quality

    def reset(self, seed: int | None = None) -> None:
        self._sloppy.reset(seed)
        self._plans.clear()  # a cache of a pure function: clearing it changes no action
        self.phase: Phase | None = None  # the last decision, for inspection only

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        torque = self._expert_torque(obs)
        return self._sloppy(torque).astype(self.action_space.dtype)

    # --- expert: a function of the observation ------------------------------------------------------------
    def _expert_torque(self, obs: np.ndarray) -> np.ndarray:
        q, qd, puck, goal = obs[OBS_QPOS], obs[OBS_QVEL], obs[OBS_PUCK_XY], obs[OBS_GOAL_XY]
        self.arm.set_state(q, qd)
        dq = self._decide(q, puck, goal)
        # never command more than half the remaining way to a joint limit within one control step
        dq = np.clip(dq, (self.arm.lower - q) / self.arm.dt * 0.5, (self.arm.upper - q) / self.arm.dt * 0.5)
        torque = self.arm.torque_for(dq, qd, self.gains.velocity_time_constant)
        return np.clip(torque, self.action_space.low, self.action_space.high)

    def _decide(self, q: np.ndarray, puck: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Joint velocity for this step; the phase follows from where the claw is relative to puck and goal."""
        held = self._holding_grip(puck, goal)
        if held is not None:
            self.phase = Phase.PUSH
            return self._push_velocity(q, puck, goal, held)
        plan = self._plan(puck, goal)
        corner, rot = self.arm.corner(plan.grip)
        pre = self._pre_push_point(puck, goal)
        over_pre = np.linalg.norm(corner[:2] - pre[:2]) < self.gains.capture_radius
        if corner[2] < HOVER_HEIGHT - 0.02 and not over_pre:
            self.phase = Phase.LIFT  # low but not behind the puck: rise straight up before flying
            above = np.array([corner[0], corner[1], HOVER_HEIGHT])
            return self._task_velocity(corner, rot, above, rot, q, self.gains.max_speed)
        if over_pre or np.max(np.abs(plan.q_hover - q)) < self.gains.hover_tolerance:
            self.phase = Phase.DESCEND
            return self._joint_velocity(plan.q_pre, q)
        self.phase = Phase.REACH
        return self._joint_velocity(plan.q_hover, q)

    def _push_dir(self, puck: np.ndarray, goal: np.ndarray, grip: CornerGrip | None = None) -> np.ndarray:
        """Direction puck -> goal; at the goal (where it would spin), the held corner's own bisector."""
        to_goal = goal - puck
        dist = np.linalg.norm(to_goal)
        if dist > 0.03 or grip is None:
            return to_goal / max(dist, 1e-9)
        return grip.bisector(self.arm.corner(grip)[1])

    def _pre_push_point(self, puck: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.array([*(puck - (NEST_DISTANCE + PRE_PUSH_GAP) * self._push_dir(puck, goal)), PUSH_HEIGHT])

    def _holding_grip(self, puck: np.ndarray, goal: np.ndarray) -> CornerGrip | None:
        """The grip whose corner holds the puck now (claw low, puck inside its wedge, facing the goal), if any."""
        for grip in GRIPS:
            corner, rot = self.arm.corner(grip)
            if corner[2] >= PUSH_SWITCH_HEIGHT or np.sign(rot[2, 2]) != grip.flip:
                continue
            if not self._puck_escaped(grip, corner, rot, puck, self._push_dir(puck, goal, grip)):
                return grip
        return None

    def _push_velocity(self, q: np.ndarray, puck: np.ndarray, goal: np.ndarray, grip: CornerGrip) -> np.ndarray:
        """Hold the puck in the corner and press it towards the goal, deeper when the corner is yawed."""
        u = self._push_dir(puck, goal, grip)
        corner, rot = self.arm.corner(grip)
        bisector = grip.bisector(rot)
        yaw = abs(signed_angle(u, bisector))
        depth = self.gains.press_depth / np.cos(max(np.pi / 4 - yaw, 0.2))
        if np.linalg.norm(goal - puck) < 0.03:
            depth = 0.03  # at the goal: just hold it
        target = np.array([*(puck - NEST_DISTANCE * bisector + depth * u), PUSH_HEIGHT])
        goal_rot = grip.target_frame(rot, u, self.gains.yaw_tolerance)
        end = np.array([*(goal - (NEST_DISTANCE + 0.04) * u), PUSH_HEIGHT])
        q_end, _ = self._ik(q, end, grip, u, self.ik_budget.end_of_push)  # null-space posture: the push's end
        return self._task_velocity(corner, rot, target, goal_rot, q, self.gains.push_speed, posture=q_end)

    def _puck_escaped(
        self, grip: CornerGrip, corner: np.ndarray, rot: np.ndarray, puck: np.ndarray, push_dir: np.ndarray
    ) -> bool:
        """Puck outside the corner's wedge, beyond a wall's end, or a wall about to pass its centre."""
        prong, crossbar = grip.walls(rot)
        rel = puck - corner[:2]
        along_prong, along_bar = rel @ prong, rel @ crossbar
        off_prong = abs(rel @ np.array([-prong[1], prong[0]]))
        off_bar = abs(rel @ np.array([-crossbar[1], crossbar[0]]))
        outside = along_prong < 0 or along_bar < 0 or along_prong > PRONG_REACH or along_bar > CROSSBAR_REACH
        passing = min(off_prong, off_bar) < self.gains.escape_clearance
        misaligned = grip.bisector(rot) @ push_dir < np.cos(self.gains.max_misalignment)
        return outside or passing or misaligned

    def _plan(self, puck: np.ndarray, goal: np.ndarray) -> PushPlan:
        """The approach for this puck and goal (a pure function of them, cached while they stay put)."""
        key = np.concatenate([puck, goal]).tobytes()
        if key not in self._plans:
            self._plans[key] = self._plan_push(puck, goal)
        return self._plans[key]

    def _plan_push(self, puck: np.ndarray, goal: np.ndarray) -> PushPlan:
        """IK over the grips in a fixed order of preference (and fixed seeds): the first whose pre-push and
        end-of-push poses are reachable wins, else the least bad one.

        A fixed order, not the cheapest of all, keeps the choice of grip a simple function of the scene (one
        grip over most of it): an imitating policy can learn where the expert's choice changes.
        """
        u, budget, gains = self._push_dir(puck, goal), self.ik_budget, self.gains
        pre = self._pre_push_point(puck, goal)
        end = np.array([*(goal - (NEST_DISTANCE + 0.04) * u), PUSH_HEIGHT])
        best = None
        for grip in GRIPS:
            for q0 in (HOME, *IK_SEEDS):
                q_start, err_start = self._ik(q0, pre, grip, u, budget.screen)
                if err_start > gains.screen_tolerance:
                    continue
                q_pre, err_pre = self._ik(q_start, pre, grip, u, budget.pre_push)
                q_end, err_end = self._ik(q_pre, end, grip, u, budget.end_of_push)
                if best is None or err_pre + 0.5 * err_end < best[0]:
                    best = (err_pre + 0.5 * err_end, grip, q_pre, q_end)
                if err_pre < gains.reach_tolerance and err_end < 2 * gains.reach_tolerance:
                    break
            else:
                continue
            break
        if best is None:  # nothing screened in: refine the first grip from the home posture
            q_pre, _ = self._ik(HOME, pre, GRIPS[0], u, budget.pre_push)
            best = (0.0, GRIPS[0], q_pre, self._ik(q_pre, end, GRIPS[0], u, budget.end_of_push)[0])
        _, grip, q_pre, q_end = best
        q_hover, _ = self._ik(q_pre, pre + np.array([0.0, 0.0, HOVER_HEIGHT - PUSH_HEIGHT]), grip, u, budget.hover)
        return PushPlan(grip, q_hover, q_pre, q_end)

    def _ik(
        self, q0: np.ndarray, target: np.ndarray, grip: CornerGrip, push_dir: np.ndarray, iters: int
    ) -> tuple[np.ndarray, float]:
        return self.arm.solve_ik(q0, target, push_dir, grip, self._weights, self.gains.yaw_tolerance, iters)

    def _joint_velocity(self, q_target: np.ndarray, q: np.ndarray) -> np.ndarray:
        dq = self.gains.joint_gain * (q_target - q)
        biggest = np.max(np.abs(dq))
        return dq * (self.gains.max_joint_speed / biggest) if biggest > self.gains.max_joint_speed else dq

    def _task_velocity(
        self,
        point: np.ndarray,
        rot: np.ndarray,
        target: np.ndarray,
        target_rot: np.ndarray,
        q: np.ndarray,
        max_speed: float,
        posture: np.ndarray | None = None,
    ) -> np.ndarray:
        """Weighted resolved-rate control of the corner; redundancy goes to a posture in the null space."""
        v = self.gains.position * (target - point)
        speed = np.linalg.norm(v)
        if speed > max_speed:
            v *= max_speed / speed
        w = self.gains.orientation * orientation_error(rot, target_rot)
        jac = self._weights[:, None] * self.arm.jacobian(point)
        pinv = jac.T @ np.linalg.inv(jac @ jac.T + 1e-3 * np.eye(6))
        null = np.eye(ARM_DOF) - pinv @ jac
        return pinv @ (self._weights * np.concatenate([v, w])) + null @ ((q if posture is None else posture) - q)
