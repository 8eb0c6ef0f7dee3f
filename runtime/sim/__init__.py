"""The MuJoCo tabletop (docs/sim.md). Rendering is headless: EGL unless MUJOCO_GL says otherwise
(it must be set before `mujoco` is first imported, hence here)."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
