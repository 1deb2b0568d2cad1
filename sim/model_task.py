"""A gymnasium task built from a MuJoCo model file (MJCF) and a short spec, on gymnasium's `MujocoEnv`.

Actions are the model's actuators in their `ctrlrange`. Observations are named terms, concatenated in
order: `qpos` / `qvel` (all, or `qpos:joint_a,joint_b`), `site:NAME` / `body:NAME` (world position) and
`sensordata`. Success is "site A within R of site B" (both sites must be observed, so success is a
function of the observation and logs can be relabelled), the env reward is `success` (1 per step on
success) or `neg_distance` (minus that distance), and the episode may end at the first success
(`termination: success`) or where a user's `module:function` of observations says; a user's success or
reward comes from the task config (`task.success`, `task.reward`). At reset the arm's joints get uniform noise and the
spec's random joints (e.g. a goal's slide joints) a uniform draw in their range, redrawn until their
vector's norm lies inside `goal_radius`.

`register_model_task(name, spec)` registers it as `robo_offline/<name>-v0`; the example arm shipped with
the project (`sim/assets/reach_arm.xml`) is registered as `robo_offline/ReachArm-v0` on import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from sim.module_paths import load_object

ASSETS = Path(__file__).resolve().parent / "assets"
REWARDS = ("success", "neg_distance")


@dataclass(frozen=True)
class ModelTaskSpec:
    """What gymnasium needs beyond the model file to make it a task."""

    model: str  # MJCF path; relative paths are looked up in sim/assets/ first
    observations: tuple[str, ...] = ("qpos", "qvel")
    frame_skip: int = 5
    max_episode_steps: int = 100
    reset_noise: float = 0.05  # uniform +- on the other joints' positions (rad / m)
    random_joints: tuple[str, ...] = ()  # drawn uniformly in their range at reset (e.g. the goal's)
    goal_radius: tuple[float, float] = (0.0, float("inf"))  # redraw until |random joints' qpos| is inside
    success_sites: tuple[str, str] | None = None  # success: these two sites within success_radius
    success_radius: float = 0.02
    termination: str = "never"  # never | success | module:function, (N, obs_dim) observations -> (N,) bools
    reward: str = "success"  # success | neg_distance (between the success sites)

    @classmethod
    def from_dict(cls, d: dict) -> ModelTaskSpec:
        """From plain data (a config section, gymnasium's registered kwargs): lists become tuples, a goal
        radius of None no bound."""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        if d.get("goal_radius", ()) is None:
            d.pop("goal_radius")
        return cls(**d)

    def model_path(self) -> Path:
        path = Path(self.model)
        return path if path.is_absolute() or path.exists() else ASSETS / path


TERM_UNITS = {
    "qpos": "rad (hinge) or m (slide)",
    "qvel": "rad/s (hinge) or m/s (slide)",
    "site": "m, world frame",
    "body": "m, world frame",
    "sensordata": "the sensors' own units",
}


@dataclass
class ObservationLayout:
    """Each term's slice of the flat observation (saved with runs and exported files)."""

    terms: list[tuple[str, slice]] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return self.terms[-1][1].stop if self.terms else 0

    def parts(self) -> list[tuple[str, int, str]]:
        """(term, width, units) of each term, in order."""
        return [(name, s.stop - s.start, TERM_UNITS[name.partition(":")[0]]) for name, s in self.terms]

    def slice(self, term: str) -> slice:
        for name, part in self.terms:
            if name == term:
                return part
        raise KeyError(f"observation has no term {term!r}; it has {[n for n, _ in self.terms]}")


class ModelFileEnv(MujocoEnv):
    """The task of a `ModelTaskSpec`; `info["is_success"]` on every step."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"]}

    def __init__(self, spec: ModelTaskSpec | dict, render_mode: str | None = None, **kwargs: Any) -> None:
        self.task = spec if isinstance(spec, ModelTaskSpec) else ModelTaskSpec.from_dict(spec)
        path = self.task.model_path()
        if not path.is_file():
            raise FileNotFoundError(f"no MuJoCo model at {self.task.model} (looked in the working directory, {ASSETS})")
        model = mujoco.MjModel.from_xml_path(str(path))
        self._readers, self.layout = _observation_readers(model, self.task.observations)
        space = gym.spaces.Box(-np.inf, np.inf, (self.layout.dim,), np.float64)
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / (model.opt.timestep * self.task.frame_skip)))}
        camera = {"distance": 2.0 * model.stat.extent, "elevation": -60.0, "lookat": model.stat.center.copy()}
        kwargs.setdefault("default_camera_config", camera)  # the whole model, seen from above at an angle
        super().__init__(str(path), self.task.frame_skip, space, render_mode=render_mode, **kwargs)
        random_joints = [_joint_id(self.model, j) for j in self.task.random_joints]
        self._random_qpos = [int(self.model.jnt_qposadr[j]) for j in random_joints]
        self._random_dof = [int(self.model.jnt_dofadr[j]) for j in random_joints]
        self._random_range = np.array([self.model.jnt_range[j] for j in random_joints])
        if self.task.success_sites is not None:
            for site in self.task.success_sites:
                self.layout.slice(f"site:{site}")  # success must be a function of the observation
        if self.task.reward not in REWARDS:
            raise ValueError(f"unknown model-task reward {self.task.reward!r}; use one of {REWARDS}")
        self._terminates = _termination(self.task.termination)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.do_simulation(np.asarray(action, dtype=np.float64), self.frame_skip)
        obs = self._get_obs()
        distance = self.distance(obs)
        success = bool(distance < self.task.success_radius)
        reward = float(success) if self.task.reward == "success" else -float(distance)
        if self.render_mode == "human":
            self.render()
        terminated = bool(self._terminates(obs, success))
        return obs, reward, terminated, False, {"is_success": success, "distance": distance}

    def observation_parts(self) -> list[tuple[str, int, str]]:
        """(term, width, units) of each observation term, in order (saved with runs and exported files)."""
        return self.layout.parts()

    def distance(self, obs: np.ndarray) -> float:
        """Distance between the success sites, read from the observation (inf without success sites)."""
        if self.task.success_sites is None:
            return float("inf")
        a, b = (obs[self.layout.slice(f"site:{s}")] for s in self.task.success_sites)
        return float(np.linalg.norm(a - b))

    def reset_model(self) -> np.ndarray:
        noise = self.task.reset_noise
        qpos = self.init_qpos + self.np_random.uniform(-noise, noise, self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-noise, noise, self.model.nv)
        if self._random_qpos:
            low, high = self._random_range[:, 0], self._random_range[:, 1]
            r_min, r_max = self.task.goal_radius
            for _ in range(1000):
                draw = self.np_random.uniform(low, high)
                if r_min <= np.linalg.norm(draw) <= r_max:
                    break
            qpos[self._random_qpos] = draw
            qvel[self._random_dof] = 0.0
        self.set_state(qpos, qvel)
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([read(self.data) for read in self._readers])

    def _get_reset_info(self) -> dict[str, Any]:
        distance = self.distance(self._get_obs())
        return {"is_success": bool(distance < self.task.success_radius), "distance": distance}


def _termination(name: str) -> Callable[[np.ndarray, bool], bool]:
    """(observation, success) -> whether the episode ends: never, at success, or a user's batched function."""
    if name == "never":
        return lambda obs, success: False
    if name == "success":
        return lambda obs, success: success
    fn = load_object(name, "task.model.termination")
    return lambda obs, success: bool(fn(np.asarray(obs)[None])[0])


def success_test(spec: ModelTaskSpec) -> Callable[[np.ndarray], np.ndarray]:
    """The task's batched success test on (..., obs_dim) observations (for relabelling logs and online rewards);
    the model is read once here, not per call."""
    _, layout = _observation_readers(mujoco.MjModel.from_xml_path(str(spec.model_path())), spec.observations)
    a, b = (layout.slice(f"site:{s}") for s in spec.success_sites)
    radius = spec.success_radius

    def successes(observations: np.ndarray) -> np.ndarray:
        observations = np.asarray(observations)
        return np.linalg.norm(observations[..., a] - observations[..., b], axis=-1) < radius

    return successes


def register_model_task(name: str, spec: ModelTaskSpec) -> str:
    """Register the spec as a gymnasium id (`robo_offline/<name>-v0`, idempotent) and return the id; the model is
    loaded once here, so a bad spec fails at registration."""
    env_id = f"robo_offline/{name}-v0"
    if MODEL_TASKS.get(env_id) != spec:  # new, or changed in this process (re-registered)
        ModelFileEnv(spec).close()  # a bad file, term or site fails here, naming it
        kwargs = {"spec": dataclasses.asdict(spec)}  # plain data: Minari stores the env spec as JSON
        steps = spec.max_episode_steps
        gym.registry.pop(env_id, None)
        gym.register(env_id, entry_point=f"{__name__}:ModelFileEnv", kwargs=kwargs, max_episode_steps=steps)
    MODEL_TASKS[env_id] = spec
    return env_id


def _observation_readers(model: mujoco.MjModel, terms: tuple[str, ...]) -> tuple[list, ObservationLayout]:
    """One reader (MjData -> values) per observation term, and where each term lands in the observation."""
    readers, layout, start, data = [], ObservationLayout(), 0, mujoco.MjData(model)
    for term in terms:
        kind, _, names = term.partition(":")
        if kind in ("qpos", "qvel"):
            read = _joint_reader(model, kind, names.split(",") if names else None)
        elif kind in ("site", "body"):
            read = _frame_reader(model, kind, names)
        elif kind == "sensordata":
            read = _read("sensordata", slice(None))
        else:
            raise ValueError(f"unknown observation term {term!r}; use qpos, qvel, site:NAME, body:NAME or sensordata")
        size = len(read(data))
        readers.append(read)
        layout.terms.append((term, slice(start, start + size)))
        start += size
    return readers, layout


def _joint_reader(model: mujoco.MjModel, kind: str, joints: list[str] | None):
    if joints is None:
        return _read(kind, slice(None))
    address = model.jnt_qposadr if kind == "qpos" else model.jnt_dofadr
    return _read(kind, np.array([int(address[_joint_id(model, j)]) for j in joints]))


def _frame_reader(model: mujoco.MjModel, kind: str, name: str):
    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE if kind == "site" else mujoco.mjtObj.mjOBJ_BODY, name)
    if i < 0:
        raise ValueError(f"observation term '{kind}:{name}': the model has no {kind} named {name!r}")
    return _read("site_xpos" if kind == "site" else "xpos", i)


def _read(field_name: str, index):
    return lambda data: np.array(getattr(data, field_name)[index], dtype=np.float64).reshape(-1)


def _joint_id(model: mujoco.MjModel, name: str) -> int:
    j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if j < 0:
        raise ValueError(f"the model has no joint named {name!r}")
    return j


MODEL_TASKS: dict[str, ModelTaskSpec] = {}

REACH_ARM = ModelTaskSpec(
    model="reach_arm.xml",
    observations=("qpos:shoulder,elbow,wrist", "qvel:shoulder,elbow,wrist", "site:fingertip", "site:goal"),
    frame_skip=5,
    max_episode_steps=60,
    reset_noise=0.1,
    random_joints=("goal_x", "goal_y"),
    goal_radius=(0.10, 0.25),
    success_sites=("fingertip", "goal"),
    success_radius=0.02,
)
REACH_ARM_ID = register_model_task("ReachArm", REACH_ARM)
