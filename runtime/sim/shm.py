"""Shared memory between the simulator process and its clients (robot link, cameras, expert).

Why shared memory with seqlocks: the control loop reads the state and writes targets at 200 Hz, and
the cameras copy frames at 30 fps; a pipe round trip per read would cost the loop its GIL and the
simulator a wake-up per message. One named block holds everything, so any process (the spawned
control process included) attaches by name alone. Each region has one writer; its header's first
int64 is a sequence number, odd while a write is under way: a reader retries until it copies a
region with the same even number before and after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

N = 13
MAX_OBJECTS = 8
# float64 slots of the small regions (after the int64 seq header in slot 0)
STATE_LEN = 1 + 4 + 2 * N       # seq, t, sim_time, steps, lag_steps, qpos[13], qvel[13]
CMD_LEN = 1 + 4 + N             # seq, t, armed, stopped, count, targets[13]
OBJ_LEN = 1 + 1 + 7 * MAX_OBJECTS  # seq, n, (pos3, quat4) * MAX
CTRL_LEN = 4                    # alive flag, stop request, sim pid, heartbeat time
FRAME_HDR = 4                   # seq, t_capture, index, has_mask


@dataclass(frozen=True)
class Layout:
    """Byte offsets of every region; a pure function of the camera sizes (clients recompute it)."""

    head: tuple[int, int]
    wrist: tuple[int, int]

    def regions(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        off = 0
        for name, n in (("ctrl", CTRL_LEN), ("state", STATE_LEN), ("cmd", CMD_LEN), ("obj", OBJ_LEN)):
            out[name] = (off, n * 8)
            off += n * 8
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
