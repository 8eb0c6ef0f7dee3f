"""Deterministic episodes for recorder tests: frame i of an episode is recognisable from its pixels,
state and action, so a read-back can check every value (and which frames survived a crash)."""

import numpy as np

H, W = 24, 32  # head camera (small: tests stay fast)
WH, WW = 12, 16  # wrist camera (a different size, like real robots)


def frame(i: int, episode: int = 0):
    head = np.full((H, W, 3), (i + 3 * episode) % 256, dtype=np.uint8)
    head[0, 0] = [episode, 0, 255]  # episode marker
    wrist = np.full((WH, WW, 3), (2 * i + 1) % 256, dtype=np.uint8)
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[i % H, :] = 1
    return head, wrist, mask


def state(i: int, episode: int = 0) -> np.ndarray:
    return np.full(13, 0.01 * i + episode, dtype=np.float64)


def action(i: int, episode: int = 0) -> np.ndarray:
    return np.full(13, -0.01 * i - episode, dtype=np.float64)


def feed_frames(rec, start: int, stop: int, episode: int = 0, dt: float = 0.05):
    """Drive the recorder like the runtime's dispatcher: state, frames at t, then the command after t."""
    for i in range(start, stop):
        t = episode * 1000.0 + i * dt
        rec.on_joint_state(state(i, episode))
        rec.on_frames(*frame(i, episode), t)
        rec.on_command(action(i, episode), t + dt / 2)


def expected(n: int, episode: int = 0) -> dict:
    frames = [frame(i, episode) for i in range(n)]
    return {
        "rgbm": np.stack([np.concatenate([h, m[..., None]], axis=-1) for h, _, m in frames]),
        "right_cam_img": np.stack([w for _, w, _ in frames]),
        "right_state": np.stack([state(i, episode) for i in range(n)]).astype(np.float32),
        "action": np.stack([action(i, episode) for i in range(n)]).astype(np.float32),
        "timestamp": np.array([episode * 1000.0 + i * 0.05 for i in range(n)]),
    }


# ---- chunk hooks for the writer *process* (importable by "rec_helpers:name"; gates are files) ----
GATE_ENV = "DEXGRASP_TEST_GATE_DIR"


def hold_first_chunk(chunk_index: int) -> None:
    """Park the writer inside chunk 0 until the test creates GATE/release (signals GATE/entered)."""
    import os
    import time
    from pathlib import Path

    if chunk_index != 0:
        return
    gate = Path(os.environ[GATE_ENV])
    (gate / "entered").touch()
    deadline = time.monotonic() + 60
    while not (gate / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the held disk")
        time.sleep(0.01)


def disk_full_at_second_chunk(chunk_index: int) -> None:
    import errno

    if chunk_index == 1:
        raise OSError(errno.ENOSPC, "No space left on device")
