"""Shared memory between the simulator process and its clients (robot link, cameras, expert).

Why shared memory with seqlocks: the control loop reads the state and writes targets at 200 Hz, and
the cameras copy frames at 30 fps; a pipe round trip per read would cost the loop its GIL and the
simulator a wake-up per message. One named block holds everything, so any process (the spawned
control process included) attaches by name alone. Each region has one writer; its header's first
int64 is a sequence number, odd while a write is under way: a reader retries until it copies a
region with the same even number before and after.

The joint regions are sized by the robot's joint count (`Layout.n_joints`, from the config's joint
space): the creator records it in the control region and an attacher built for another count is
refused with one line instead of reading another layout's bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

MAX_OBJECTS = 8
# float64 slots of the small regions (after the int64 seq header in slot 0); n = the joint count
STATE_HEAD = 4                  # t, sim_time, steps, lag_steps; then qpos[n], qvel[n]
CMD_HEAD = 4                    # t, armed, stopped, count; then targets[n]
OBJ_LEN = 1 + 1 + 7 * MAX_OBJECTS  # seq, n, (pos3, quat4) * MAX
CTRL_LEN = 5                    # alive flag, stop request, sim pid, heartbeat time, joint count
CTRL_JOINTS = 4                 # the ctrl slot holding the creator's joint count
FRAME_HDR = 4                   # seq, t_capture, index, has_mask


def state_len(n_joints: int) -> int:
    return 1 + STATE_HEAD + 2 * n_joints


def cmd_len(n_joints: int) -> int:
    return 1 + CMD_HEAD + n_joints


@dataclass(frozen=True)
class Layout:
    """Byte offsets of every region; a pure function of the camera sizes and the robot's joint count
    (clients recompute it from the same config)."""

    head: tuple[int, int]
    wrist: tuple[int, int]
    n_joints: int

    def __post_init__(self) -> None:
        if not (isinstance(self.n_joints, int) and self.n_joints >= 1):
            raise ValueError(f"sim shared memory: the joint count must be a positive integer, got {self.n_joints!r}")

    def regions(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        off = 0
        n = self.n_joints
        for name, size in (("ctrl", CTRL_LEN), ("state", state_len(n)), ("cmd", cmd_len(n)), ("obj", OBJ_LEN)):
            out[name] = (off, size * 8)
            off += size * 8
        for cam, (w, h) in (("head", self.head), ("wrist", self.wrist)):
            out[f"{cam}_hdr"] = (off, FRAME_HDR * 8)
            off += FRAME_HDR * 8
            out[f"{cam}_img"] = (off, w * h * 3)
            off += (w * h * 3 + 7) // 8 * 8
            out[f"{cam}_mask"] = (off, w * h)
            off += (w * h + 7) // 8 * 8
        out["_size"] = (off, 0)
        return out


class SimMemory:
    """numpy views of the regions of one named block."""

    def __init__(self, layout: Layout, name: str | None = None, create: bool = False) -> None:
        self.layout = layout
        regions = layout.regions()
        size = regions["_size"][0]
        if create:
            self.shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        else:
            # Attached, never unlinked here. (Python < 3.13 registers it with the resource tracker
            # anyway; our attachers are the owner's children and share its tracker, which keeps one
            # entry per name, so the owner's unlink clears it.)
            self.shm = shared_memory.SharedMemory(name=name)
        self.name = self.shm.name
        self.owner = create
        buf = self.shm.buf
        self.views: dict[str, np.ndarray] = {}
        if not create:
            found = _joint_count(buf) if self.shm.size >= CTRL_LEN * 8 else None
            if found != layout.n_joints or self.shm.size < size:
                del buf
                self.shm.close()
                from runtime.errors import ConfigError

                why = (f"was made for {found} joints, this robot config has {layout.n_joints}"
                       if found is not None and found != layout.n_joints
                       else f"is {self.shm.size} bytes, less than the layout for {layout.n_joints} joints needs")
                raise ConfigError(f"sim shared memory {self.name} {why}; attach with the config the simulator "
                                  "was started with")
        for key, (off, n) in regions.items():
            if key == "_size":
                continue
            if key.endswith("_img"):
                w, h = layout.head if key.startswith("head") else layout.wrist
                self.views[key] = np.ndarray((h, w, 3), np.uint8, buf, off)
            elif key.endswith("_mask"):
                w, h = layout.head if key.startswith("head") else layout.wrist
                self.views[key] = np.ndarray((h, w), np.uint8, buf, off)
            else:
                self.views[key] = np.ndarray((n // 8,), np.float64, buf, off)
        if create:
            for v in self.views.values():
                v[...] = 0
            self.views["ctrl"][CTRL_JOINTS] = layout.n_joints

    def __getitem__(self, key: str) -> np.ndarray:
        return self.views[key]

    def close(self) -> None:
        self.views = {}
        try:
            self.shm.close()
        except BufferError:  # a view still alive somewhere: the mapping goes with the process
            pass
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


def _joint_count(buf) -> int:
    """The joint count the creator recorded in the control region (no view of `buf` is kept)."""
    return int(np.frombuffer(buf, np.float64, CTRL_LEN, 0)[CTRL_JOINTS])


def write(region: np.ndarray, values: np.ndarray, start: int = 1) -> None:
    """Seqlock write of `values` into `region[start:]` (one writer per region)."""
    region[0] += 1
    region[start:start + len(values)] = values
    region[0] += 1


def read(region: np.ndarray, timeout_s: float = 0.05) -> np.ndarray:
    """A consistent copy of `region[1:]`, or the last attempt after `timeout_s` (a writer that died
    mid-write: its data is then at most one write old)."""
    end = time.monotonic() + timeout_s
    while True:
        s1 = region[0]
        out = region[1:].copy()
        if s1 == region[0] and int(s1) % 2 == 0:
            return out
        if time.monotonic() > end:
            return out
        time.sleep(0)
