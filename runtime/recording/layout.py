"""The on-disk layout of a recording directory (one place for every name and dtype).

    DIR/
      .recorder.lock                  flock held by the live recorder
      episode_000001/
        data.zarr/                    zarr format 2 (what upstream's zarr 2.12 reads), one episode:
          data/action        (N, J)        float32  the command sent for this frame (model space; J = joints, 13 upstream)
          data/right_state   (N, J)        float32  measured state at the frame
          data/rgbm          (N, H, W, 4)  uint8    head image (BGR as captured) + mask {0, 1}
          data/right_cam_img (N, h, w, 3)  uint8    wrist image (BGR as captured)
          data/timestamp     (N,)          float64  runtime monotonic capture time of the frame
          meta/episode_ends  (1,)          int64    [N]  (upstream ReplayBuffer convention)
        events.jsonl                  planner prompts/replies and episode events, as they happen
        journal.jsonl                 one line per flushed chunk: frames so far + chunk checksums
        video.mp4                     head | wrist | mask overlay (upstream record_frame style)
        episode.json                  prompt, outcome, counts, timing summary
        MANIFEST.json                 written LAST (atomic rename): every file's size and sha256
      quarantine/episode_000002/      cut by a crash: never loaded; QUARANTINE.json says why

Upstream's MaskImageDataset takes a list of zarr paths, so each episode's data.zarr trains as is;
`pack_dataset` merges verified episodes into one store with cumulative episode_ends.
"""

from __future__ import annotations

import re

import numpy as np

MANIFEST = "MANIFEST.json"
ZARR_DIR = "data.zarr"
EVENTS = "events.jsonl"
JOURNAL = "journal.jsonl"
EPISODE_INFO = "episode.json"
QUARANTINE_DIR = "quarantine"
QUARANTINE_NOTE = "QUARANTINE.json"
LOCK_FILE = ".recorder.lock"
FORMAT = "dexgrasp-episode/1"
ZARR_FORMAT = 2

EPISODE_RE = re.compile(r"^episode_(\d{6})$")

# key -> dtype; image shapes come from the first frame, low-dim sizes from the config
DTYPES = {
    "action": np.float32,
    "right_state": np.float32,
    "rgbm": np.uint8,
    "right_cam_img": np.uint8,
    "timestamp": np.float64,
}
TRAINING_KEYS = ("right_cam_img", "rgbm", "right_state", "action")  # what MaskImageDataset loads


def episode_name(index: int) -> str:
    return f"episode_{index:06d}"


def chunk_file(key: str, chunk_index: int, ndim: int) -> str:
    """Relative path (inside data.zarr) of chunk `chunk_index` of data/<key> (zarr v2, '.' separator)."""
    return f"data/{key}/" + ".".join([str(chunk_index)] + ["0"] * (ndim - 1))
