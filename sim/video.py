"""Offscreen rendering of evaluation episodes into a video file.

Rendering uses gymnasium's MuJoCo renderer (`render_mode="rgb_array"`), which picks an OpenGL backend:
`MUJOCO_GL` when set, else GLFW, EGL, OSMesa in turn; a headless machine needs EGL or OSMesa. Videos are
written with imageio's ffmpeg plugin (the `video` extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

NO_GL = (
    "offscreen rendering needs OpenGL: on a machine without a display install EGL (e.g. apt install libegl1) "
    "or OSMesa (apt install libosmesa6) and set MUJOCO_GL=egl or MUJOCO_GL=osmesa"
)


class RenderError(RuntimeError):
    """Episodes cannot be rendered or written here; the message says what to install."""


class FrameRecorder(gym.Wrapper):
    """Keeps the rendered frame after every reset and step (the env needs render_mode="rgb_array")."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.frames: list[np.ndarray] = []
        headless_gl()  # before the first render(), where gymnasium picks its OpenGL backend

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        out = self.env.reset(**kwargs)
        self._record()
        return out

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        self._record()
        return out

    def _record(self) -> None:
        try:
            frame = self.env.render()
        except Exception as err:  # noqa: BLE001 - GL failures surface as several exception types
            raise RenderError(f"{NO_GL} ({type(err).__name__}: {err})") from None
        if frame is None:
            raise RenderError("the env returned no frame: make it with render_mode='rgb_array'")
        self.frames.append(np.asarray(frame))


def headless_gl() -> None:
    """Without a display, render through EGL unless MUJOCO_GL chooses (gymnasium would try GLFW first and fail)."""
    if "MUJOCO_GL" not in os.environ and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def write_video(frames: list[np.ndarray], path: str | Path, fps: int) -> Path:
    """Write RGB frames to `path` (.mp4, .gif, ... by suffix); returns the path."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise RenderError("writing videos needs imageio: pip install 'robo-offline[video]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        imageio.mimsave(path, frames, fps=fps)
    except (ImportError, ValueError, RuntimeError) as err:
        raise RenderError(f"cannot write {path} ({err}); for .mp4: pip install 'robo-offline[video]'") from None
    return path
