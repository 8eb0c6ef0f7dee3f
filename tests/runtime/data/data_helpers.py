"""Recorded sim-like episodes for the data tests, made with the real recorder (thread writer, no fsync).

Frames come at an uneven ~30 Hz camera clock so resampling to 20 Hz is exercised; frame i is
recognisable (head pixel value, state and action ramps), so tests can check which frame was kept.
"""

from __future__ import annotations

import time

import numpy as np

from runtime.recording import EpisodeRecorder, RecordingConfig, list_episodes

H, W, WH, WW = 24, 32, 12, 16
LIMITS = {"lower": [-3.1, -2.268, -3.1, -2.355, -3.1, -2.233, -6.28],
          "upper": [3.1, 2.268, 3.1, 2.355, 3.1, 2.233, 6.28]}


def camera_times(n: int, t0: float = 100.0) -> np.ndarray:
    jitter = 0.004 * np.sin(np.arange(n))
    return t0 + np.arange(n) / 30.0 + jitter


def frame(i: int):
    head = np.zeros((H, W, 3), dtype=np.uint8)
    head[..., 0] = (5 * i) % 256  # blue channel (BGR) carries the frame number
    head[..., 2] = 200
    wrist = np.full((WH, WW, 3), (7 * i) % 256, dtype=np.uint8)
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[4:12, 8:20] = 1
    return head, wrist, mask


def state(i: int) -> np.ndarray:  # robot units: arm rad, hand 0..1
    q = np.zeros(13)
    q[:7] = 0.01 * i
    q[7:] = 0.5
    return q


def action(i: int) -> np.ndarray:
    return state(i + 1)


def record(root, episodes=(("grasp the red cube", 45),), provenance=None) -> list:
    cfg = RecordingConfig(dir=str(root), chunk_frames=8, min_free_mb=0, fsync=False, writer="thread",
                          arm_joint_limits=LIMITS)
    rec = EpisodeRecorder(cfg, provenance=provenance).start()
    for prompt, n in episodes:
        rec.on_episode_event({"event": "episode_start", "prompt": prompt})
        ts = camera_times(n)
        for i, t in enumerate(ts):
            rec.on_joint_state(state(i))
            rec.on_frames(*frame(i), float(t))
            rec.on_command(action(i), float(t) + 0.001)
        rec.on_episode_event({"event": "episode_end", "outcome": "success"})
    deadline = time.monotonic() + 30
    while not rec.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    rec.stop()
    return list_episodes(root)
