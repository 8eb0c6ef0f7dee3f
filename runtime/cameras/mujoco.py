"""`cameras.kind: mujoco`: the head and wrist views rendered by the sim process.

The sim renders both cameras at `cameras.head.fps` and the configured sizes into shared memory,
stamping each frame with its render time on the monotonic clock; `read()` waits for a frame newer
than the last one it returned (polling the frame's sequence header, a few ms at a time). A frame's
`info["gt_mask"]` (object index + 1 per pixel, 0 = none) is present only when the sim was started
with ground-truth masks (evaluation; nothing in the runtime's data path reads it).
"""

from __future__ import annotations

import time

import numpy as np

from runtime.cameras.base import Camera, CameraTimeoutError, Frame
from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError

POLL_S = 0.002


class MujocoCamera(Camera):
    def __init__(self, name: str, view: str, cfg, *, width: int, height: int, fps: float,
                 clock: Clock | None = None) -> None:
        super().__init__(name, width, height, fps, clock)
        if view not in ("head", "wrist"):
            raise ValueError(f"mujoco camera '{name}': view must be 'head' or 'wrist', got {view!r}")
        self.view = view
        self._cfg = cfg
        self._link = None
        self._boot_link = None
        self._last_index = 0

    def describe(self) -> str:
        return f"MuJoCo camera '{self.name}' ({self.view})"

    def _connect(self) -> None:
        from runtime.sim.link import acquire

        boot, self._boot_link = self._boot_link, None
        self._link = boot if boot is not None else acquire(self._cfg)
        self._last_index = 0

    def disconnect(self) -> None:
        """Also lets go of the sim started for this camera when it never connected (a runtime
        that failed to start), so that sim stops with the runtime."""
        super().disconnect()
        boot, self._boot_link = self._boot_link, None
        if boot is not None:
            boot.release()

    def _disconnect(self) -> None:
        if self._link is not None:
            self._link.release()
            self._link = None

    def _read(self, timeout_ms: float) -> Frame:
        link = self._link
        if link is None or not link.alive:
            raise DeviceNotConnectedError(f"{self.describe()}: the sim process is not running")
        hdr = link.mem[f"{self.view}_hdr"]
        deadline = time.monotonic() + timeout_ms / 1e3
        while True:
            s1 = hdr[0]
            if int(s1) % 2 == 0 and int(hdr[2]) > self._last_index:
                img = link.mem[f"{self.view}_img"].copy()
                t, index, has_mask = float(hdr[1]), int(hdr[2]), hdr[3] > 0.5
                mask = link.mem[f"{self.view}_mask"].copy() if has_mask else None
                if hdr[0] == s1:
                    break
            if time.monotonic() > deadline:
                raise CameraTimeoutError(f"{self.describe()}: no frame within {timeout_ms:.0f} ms")
            time.sleep(POLL_S)
        self._last_index = index
        info = {"gt_mask": mask} if mask is not None else {}
        return Frame(np.ascontiguousarray(img), t, index, self.name, info=info)


def make_mujoco_cameras(cfg, clock: Clock) -> tuple[MujocoCamera, MujocoCamera, None]:
    """(head, wrist, None): no synthetic scene (the episode's lift check then uses its timer)."""
    c = cfg.cameras
    head = MujocoCamera("third", "head", cfg, width=c.head.width, height=c.head.height, fps=c.head.fps, clock=clock)
    wrist = MujocoCamera("right_first", "wrist", cfg, width=c.wrist.width, height=c.wrist.height,
                         fps=c.head.fps, clock=clock)
    # Start the sim now, not when the capture thread first connects: a control process spawned
    # after this attaches to it through the environment (runtime/sim/link.py).
    from runtime.sim.link import acquire

    head._boot_link = acquire(cfg)
    return head, wrist, None
