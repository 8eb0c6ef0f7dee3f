"""Synthetic head/wrist cameras for the embedded default, with injectable faults.

The cameras render `scene.TabletopScene` (coloured objects + an arm that follows the robot's
joint state) at a fixed fps on the injected clock, so with a `FakeClock` every test is exact and
instant, and with the real clock they behave like a device: `read()` blocks until the next frame
is due. Faults (`SyntheticFaults`) reproduce what real cameras do: stalls, dropped frames,
duplicated frames, late delivery, unplug/replug. Frames can carry the ground-truth label image
(`ground_truth=True`) so tracker tests measure IoU against the truth.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from runtime.cameras.base import Camera, CameraTimeoutError, Frame
from runtime.cameras.scene import HeadRenderer, TabletopScene, WristRenderer
from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError

VIEWS = ("head", "wrist")


@dataclass
class SyntheticFaults:
    """Faults to inject. Times are seconds since the camera first connected.

    drop_every:      skip every Nth frame (its index is never delivered; 0 = off).
    duplicate_every: deliver every Nth frame twice (same index and timestamp; 0 = off).
    late_every:      deliver every Nth frame `late_by_s` after its capture time (0 = off).
    stall_at_s / stall_for_s: no frames in [stall_at_s, stall_at_s + stall_for_s).
    unplug_at_s / unplug_for_s: the device is gone in that window (reads and connects fail).
    """

    drop_every: int = 0
    duplicate_every: int = 0
    late_every: int = 0
    late_by_s: float = 0.1
    stall_at_s: float | None = None
    stall_for_s: float = 0.0
    unplug_at_s: float | None = None
    unplug_for_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("drop_every", "duplicate_every", "late_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0 or value == 1:
                raise ValueError(f"SyntheticFaults.{name} must be 0 (off) or an integer >= 2, got {value!r}")
        for name in ("late_by_s", "stall_for_s", "unplug_for_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"SyntheticFaults.{name} must be >= 0, got {getattr(self, name)!r}")


class SyntheticCamera(Camera):
    """One view ("head" or "wrist") of a shared `TabletopScene`.

    Blocking: `read(timeout_ms)` sleeps on the injected clock until the next frame is due (with
    a FakeClock that advances fake time instead). If the reader falls behind, frames that were
    due meanwhile are skipped (index gap), like a real device's ring buffer.
    Runtime fault controls: `stall(duration_s)`, `unplug()`, `replug()` (thread-safe).
    """

    def __init__(
        self,
        name: str,
        scene: TabletopScene,
        view: str = "head",
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        clock: Clock | None = None,
        seed: int = 0,
        noise_std: float = 0.0,
        faults: SyntheticFaults | None = None,
        ground_truth: bool = False,
    ) -> None:
        super().__init__(name, width, height, fps, clock)
        if view not in VIEWS:
            raise ValueError(f"synthetic camera '{name}': view must be one of {VIEWS}, got {view!r}")
        if noise_std < 0:
            raise ValueError(f"synthetic camera '{name}': noise_std must be >= 0, got {noise_std}")
        self.scene = scene
        self.view = view
        self.faults = faults or SyntheticFaults()
        self.ground_truth = ground_truth
        self.period_s = 1.0 / self.fps
        self.renderer = HeadRenderer(width, height, seed) if view == "head" else WristRenderer(width, height)
        self._noise = self._make_noise(seed, noise_std)
        self._labels = np.zeros((height, width), np.uint8)
        self._fault_lock = threading.Lock()
        self._unplugged = False
        self._manual_stall: tuple[float, float] | None = None
        self._t_start: float | None = None
        self._next_k = 0
        self._pending_duplicate: Frame | None = None
        self.frames_rendered = 0

    def _make_noise(self, seed: int, noise_std: float) -> list[tuple[np.ndarray, np.ndarray]]:
        if noise_std <= 0:
            return []
        rng = np.random.default_rng(seed + 1)
        out = []
        for _ in range(4):  # cycled by frame index: deterministic, and costs two saturating adds
            n = np.round(rng.normal(0.0, noise_std, (self.height, self.width, 3))).astype(np.int16)
            out.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        return out

    def describe(self) -> str:
        return f"synthetic camera '{self.name}' ({self.view} view)"

    # ------------------------------------------------------------------ fault controls
    def stall(self, duration_s: float) -> None:
        """Produce no frames for `duration_s` from now."""
        now = self.clock.now()
        with self._fault_lock:
            self._manual_stall = (now, now + float(duration_s))

    def unplug(self) -> None:
        """Simulate pulling the cable: reads and connects fail until `replug()`."""
        with self._fault_lock:
            self._unplugged = True

    def replug(self) -> None:
        with self._fault_lock:
            self._unplugged = False

    def _elapsed(self, t: float) -> float:
        return t - (self._t_start if self._t_start is not None else t)

    def _is_unplugged(self, t: float) -> bool:
        with self._fault_lock:
            if self._unplugged:
                return True
        f = self.faults
        return f.unplug_at_s is not None and f.unplug_at_s <= self._elapsed(t) < f.unplug_at_s + f.unplug_for_s

    def _stall_end(self, t: float) -> float | None:
        """If time `t` falls in a stall window, the window's end time; else None."""
        with self._fault_lock:
            manual = self._manual_stall
        if manual is not None and manual[0] <= t < manual[1]:
            return manual[1]
        f = self.faults
        if f.stall_at_s is not None and self._t_start is not None:
            start = self._t_start + f.stall_at_s
            if start <= t < start + f.stall_for_s:
                return start + f.stall_for_s
        return None

    # ------------------------------------------------------------------ Camera hooks
    def _connect(self) -> None:
        now = self.clock.now()
        if self._is_unplugged(now):
            raise DeviceNotConnectedError(f"{self.describe()}: device not found (unplugged)")
        if self._t_start is None:
            self._t_start = now
            self._next_k = 0
        else:  # after a reconnect, continue with the frame that is due now
            self._next_k = max(self._next_k, math.ceil((now - self._t_start) / self.period_s))
        self._pending_duplicate = None

    def _disconnect(self) -> None:
        self._pending_duplicate = None

    def _read(self, timeout_ms: float) -> Frame:
        now = self.clock.now()
        deadline = now + timeout_ms / 1e3
        if self._is_unplugged(now):
            raise DeviceNotConnectedError(f"{self.describe()}: device disappeared (unplugged)")
        if self._pending_duplicate is not None:
            frame, self._pending_duplicate = self._pending_duplicate, None
            return frame
        t0 = self._t_start
        # skip frames that were due while nobody read (a real device overwrites its buffer)
        k = max(self._next_k, math.floor((now - t0) / self.period_s + 1e-9))
        f = self.faults
        while True:
            t_frame = t0 + k * self.period_s
            if f.drop_every and k % f.drop_every == f.drop_every - 1:
                k += 1
                continue
            stall_end = self._stall_end(t_frame)
            if stall_end is not None:
                k = max(k + 1, math.ceil((stall_end - t0) / self.period_s - 1e-9))
                continue
            break
        t_deliver = t_frame + (f.late_by_s if f.late_every and k % f.late_every == 0 and k > 0 else 0.0)
        if t_deliver > deadline:
            self.clock.sleep_until(deadline)
            raise CameraTimeoutError(
                f"{self.describe()}: no frame within {timeout_ms:.0f} ms "
                f"(next frame due in {(t_deliver - now) * 1e3:.0f} ms)"
            )
        self.clock.sleep_until(t_deliver)
        if self._is_unplugged(self.clock.now()):
            raise DeviceNotConnectedError(f"{self.describe()}: device disappeared (unplugged)")
        self._next_k = k + 1
        frame = self.render_frame(k, t_frame)
        if f.duplicate_every and k % f.duplicate_every == 0 and k > 0:
            self._pending_duplicate = frame
        return frame

    # ------------------------------------------------------------------ rendering
    def render_frame(self, index: int, t_capture: float) -> Frame:
        """Render the scene as it is now (no pacing, no faults). Cost: about 1 ms at 640x480."""
        snap = self.scene.snapshot()
        labels = self._labels if self.ground_truth else None
        image = self.renderer.render(snap, labels)
        if self._noise:
            pos, neg = self._noise[index % len(self._noise)]
            cv2.add(image, pos, dst=image)
            cv2.subtract(image, neg, dst=image)
        info: dict = {"view": self.view, "held": snap.held}
        if labels is not None:
            info["labels"] = labels.copy()
            info["label_ids"] = self.scene.labels
        self.frames_rendered += 1
        return Frame(image=image, t_capture=t_capture, index=index, camera=self.name, info=info)


def ground_truth_mask(frame: Frame, object_name: str) -> np.ndarray:
    """The visible pixels of `object_name` in a frame rendered with `ground_truth=True` (uint8 {0,1})."""
    if "labels" not in frame.info:
        raise ValueError(f"frame {frame.index} of '{frame.camera}' has no ground truth; "
                         "create the camera with ground_truth=True")
    ids = frame.info["label_ids"]
    if object_name not in ids:
        raise KeyError(f"no object '{object_name}' in the scene; known: {sorted(ids)}")
    return (frame.info["labels"] == ids[object_name]).astype(np.uint8)


def make_synthetic_cameras(
    state_fn: Callable[[], np.ndarray] | None = None,
    *,
    clock: Clock | None = None,
    fps: float = 30.0,
    seed: int = 0,
    noise_std: float = 2.0,
    ground_truth: bool = False,
    head_faults: SyntheticFaults | None = None,
    wrist_faults: SyntheticFaults | None = None,
    joint_space=None,
) -> tuple[TabletopScene, SyntheticCamera, SyntheticCamera]:
    """The embedded default pair: head camera "third" and wrist camera "right_first" (640x480 BGR,
    upstream's names), sharing one scene driven by `state_fn` (returns the robot's joint positions
    in `joint_space`'s layout, a runtime.joint_space.JointSpace; default: upstream's 7 + 6)."""
    scene = TabletopScene(state_fn, joint_space=joint_space)
    head = SyntheticCamera("third", scene, "head", fps=fps, clock=clock, seed=seed, noise_std=noise_std,
                           faults=head_faults, ground_truth=ground_truth)
    wrist = SyntheticCamera("right_first", scene, "wrist", fps=fps, clock=clock, seed=seed + 7,
                            noise_std=noise_std, faults=wrist_faults, ground_truth=ground_truth)
    return scene, head, wrist
