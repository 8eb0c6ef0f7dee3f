"""Writes one episode: zarr chunks + journal while recording, manifest last when finished.

Runs only on the recorder's writer thread (not thread-safe by design). Every flush writes whole
new zarr chunks, fsyncs them and appends a journal line with their checksums, so after a crash
the journal says exactly which frames are intact (see store.salvage_episode).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.recording import zarr_compat as zc
from runtime.recording.config import RecordingConfig
from runtime.recording.layout import (
    DTYPES,
    EPISODE_INFO,
    EVENTS,
    JOURNAL,
    QUARANTINE_DIR,
    QUARANTINE_NOTE,
    ZARR_DIR,
    ZARR_FORMAT,
    chunk_file,
)
from runtime.recording.manifest import build_manifest, fsync_dir, sha256_file, write_atomic, write_manifest
from runtime.recording.video import VideoSink, compose_frame

log = logging.getLogger(__name__)


class RecordingError(OSError):
    """The recorder cannot write (disk full, directory locked, episode cut) or a recording is invalid."""


@dataclass
class FrameRecord:
    """One training step: images at t, the state measured at t, the command sent right after."""

    t: float
    head: np.ndarray  # (H, W, 3) uint8 BGR
    wrist: np.ndarray  # (h, w, 3) uint8 BGR
    mask: np.ndarray  # (H, W) uint8 {0, 1}
    state: np.ndarray  # (state_dim,) float32: the robot's joints (13 upstream)
    action: np.ndarray  # (state_dim,) float32


def _rgbm_block(buf: list[FrameRecord]) -> np.ndarray:
    """(n, H, W, 4) uint8: head BGR + mask, like upstream's third_color_image_with_mask."""
    h, w = buf[0].head.shape[:2]
    block = np.empty((len(buf), h, w, 4), dtype=np.uint8)
    for i, r in enumerate(buf):
        block[i, :, :, :3] = r.head
        block[i, :, :, 3] = r.mask
    return block


def _compressor(name: str):
    if name == "none":
        return None
    import numcodecs

    if name == "lz4":
        return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
    return numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.BITSHUFFLE)


class EpisodeWriter:
    """Lifecycle: EpisodeWriter(...) creates the directory; add_frame/add_event while recording;
    finish() makes it complete and verified, or abort() moves it to quarantine."""

    def __init__(self, root: Path, name: str, cfg: RecordingConfig, info: dict,
                 chunk_hook: Callable[[int], None] | None = None) -> None:
        self.root, self.name, self.cfg = root, name, cfg
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=False)
        self.info = dict(info)
        self.chunk_hook = chunk_hook
        self.frames = 0
        self.chunks = 0
        self.bad_frames = 0
        self._buf: list[FrameRecord] = []
        self._arrays: dict | None = None
        self._shapes: dict | None = None
        self._events = open(self.dir / EVENTS, "a", encoding="utf-8")
        self._journal = open(self.dir / JOURNAL, "a", encoding="utf-8")
        self.video = VideoSink(self.dir / "video", cfg.video_fps) if cfg.video else None
        self._t_first: float | None = None
        self._video_phase: str | None = None
        self._video_box = None
        self._t_last: float | None = None
        self._chunk_hashes: dict[str, tuple[int, str]] = {}  # episode-relative path -> (size, sha256)

    # ------------------------------------------------------------------ recording
    def add_event(self, event: dict) -> None:
        self._events.write(json.dumps(event, default=str) + "\n")
        self._events.flush()
        # Phase changes carry the episode status (phase, planner box): the video draws the latest.
        if "phase" in event:
            self._video_phase = event.get("phase")
        if "box" in event:
            self._video_box = event.get("box")

    def add_frame(self, rec: FrameRecord) -> bool:
        """Buffer one frame; flushes a chunk when full. False (counted) if its shapes do not match."""
        shapes = {"rgbm": rec.head.shape[:2] + (4,), "right_cam_img": rec.wrist.shape}
        ok = (rec.head.ndim == 3 and rec.head.shape[2] == 3 and rec.wrist.ndim == 3 and rec.wrist.shape[2] == 3
              and rec.mask.shape == rec.head.shape[:2] and rec.head.dtype == np.uint8 and rec.wrist.dtype == np.uint8
              and rec.state.shape == (self.cfg.state_dim,) and rec.action.shape == (self.cfg.state_dim,))
        if ok and self._shapes is None:
            self._shapes = shapes
        if not ok or shapes != self._shapes:
            self.bad_frames += 1
            return False
        if self._t_first is None:
            self._t_first = rec.t
        self._t_last = rec.t
        self._buf.append(rec)
        if self.video is not None:
            self.video.write(compose_frame(rec.head, rec.wrist, rec.mask, self.cfg.video_height,
                                           phase=self._video_phase, box=self._video_box))
        if len(self._buf) >= self.cfg.chunk_frames:
            self.flush()
        return True

    def _create_arrays(self) -> None:
        root = zc.open_group_for_write(str(self.dir / ZARR_DIR))
        root.attrs.update({"prompt": self.info.get("prompt"), "episode": self.name})
        data = root.require_group("data")
        # write_empty_chunks: zarr skips all-zero chunks by default; the journal and the manifest
        # expect every chunk file to exist (a missing file must mean "lost", never "all zeros").
        n, comp, c = self.cfg.state_dim, _compressor(self.cfg.compressor), self.cfg.chunk_frames
        tails = {"action": (n,), "right_state": (n,), "rgbm": self._shapes["rgbm"],
                 "right_cam_img": self._shapes["right_cam_img"], "timestamp": ()}
        self._arrays = {
            key: zc.create_array(data, key, (0, *tail), (c, *tail), DTYPES[key], comp)
            for key, tail in tails.items()
        }
        root.require_group("meta")
        self._zroot = root

    def flush(self) -> None:
        """Write buffered frames as the next chunk (whole chunk files), fsync, journal them."""
        if not self._buf:
            return
        free_mb = shutil.disk_usage(self.dir).free / 2**20
        if free_mb < self.cfg.min_free_mb:
            raise RecordingError(f"disk nearly full: {free_mb:.0f} MB free under {self.dir} "
                                 f"(recording.min_free_mb = {self.cfg.min_free_mb})")
        if self.chunk_hook is not None:
            self.chunk_hook(self.chunks)
        if self._arrays is None:
            self._create_arrays()
        buf, self._buf = self._buf, []
        block = {
            "action": np.stack([r.action for r in buf]),
            "right_state": np.stack([r.state for r in buf]),
            "rgbm": _rgbm_block(buf),
            "right_cam_img": np.stack([r.wrist for r in buf]),
            "timestamp": np.array([r.t for r in buf], dtype=np.float64),
        }
        a, b = self.frames, self.frames + len(buf)
        files = {}
        for key, arr in self._arrays.items():
            arr.resize((b, *arr.shape[1:]))
            arr[a:b] = block[key]
            rel = chunk_file(key, self.chunks, arr.ndim)
            path = self.dir / ZARR_DIR / rel
            if self.cfg.fsync:
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            files[rel] = sha256_file(path)
            self._chunk_hashes[f"{ZARR_DIR}/{rel}"] = (path.stat().st_size, files[rel])
        self.frames, self.chunks = b, self.chunks + 1
        self._journal.write(json.dumps({"chunk": self.chunks - 1, "frames": b, "files": files}) + "\n")
        self._journal.flush()
        if self.cfg.fsync:
            os.fsync(self._journal.fileno())

    # ------------------------------------------------------------------ ending
    def finish(self, outcome: str, extra: dict | None = None) -> Path:
        """Flush, close, write episode.json and, LAST, the manifest. Returns the episode dir."""
        self.flush()
        if self.frames == 0:
            raise RecordingError(f"{self.name}: no frames were recorded")
        ends = zc.create_array(self._zroot["meta"], "episode_ends", (1,), (1,), np.int64, None)
        ends[:] = [self.frames]
        self._close_files()
        duration_s = (self._t_last - self._t_first) if self._t_first is not None else 0.0
        self.info.update({
            "outcome": outcome, "frames": self.frames, "chunks": self.chunks, "bad_frames": self.bad_frames,
            "t_first": self._t_first, "t_last": self._t_last, "duration_s": duration_s,
            "fps": (self.frames - 1) / duration_s if duration_s > 0 else None,
            "finished_wall": time.time(), "video": self.video.path.name if self.video and self.video.path else None,
            "shapes": {k: [int(v) for v in a.shape] for k, a in self._arrays.items()},
            **(extra or {}),
        })
        write_atomic(self.dir / EPISODE_INFO, json.dumps(self.info, indent=1, default=str).encode(), self.cfg.fsync)
        if self.cfg.fsync:
            for root, _, files in os.walk(self.dir / ZARR_DIR):
                for name in files:
                    if not name[0].isdigit():  # metadata files; chunk files were synced on flush
                        with open(os.path.join(root, name), "rb") as f:
                            os.fsync(f.fileno())
        manifest = build_manifest(self.dir, self.frames, {"zarr_format": ZARR_FORMAT, "prompt": self.info.get("prompt")},
                                  known=self._chunk_hashes)
        write_manifest(self.dir, manifest, self.cfg.fsync)
        return self.dir

    def abort(self, reason: str) -> Path:
        """Close what is open and move the episode to quarantine with a note. Returns its new dir."""
        self._close_files()
        return quarantine(self.root, self.dir, reason, self.cfg.fsync)

    def _close_files(self) -> None:
        for f in (self._events, self._journal):
            if not f.closed:
                f.close()
        if self.video is not None:
            self.video.close()


def quarantine(root: Path, episode_dir: Path, reason: str, fsync: bool = True) -> Path:
    """Move an incomplete episode under root/quarantine/ with QUARANTINE.json (never loaded)."""
    qdir = root / QUARANTINE_DIR
    qdir.mkdir(exist_ok=True)
    target = qdir / episode_dir.name
    suffix = 1
    while target.exists():
        target = qdir / f"{episode_dir.name}.{suffix}"
        suffix += 1
    os.replace(episode_dir, target)
    frames = 0
    journal = target / JOURNAL
    if journal.is_file():
        for line in journal.read_text(errors="replace").splitlines():
            try:
                frames = int(json.loads(line)["frames"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break  # a torn last line: the entries before it are what was committed
    note = {"reason": reason, "quarantined_wall": time.time(), "journaled_frames": frames}
    write_atomic(target / QUARANTINE_NOTE, json.dumps(note, indent=1).encode(), fsync)
    if fsync:
        fsync_dir(qdir)
    log.warning("recording: %s quarantined (%s); %d journaled frames salvageable", episode_dir.name, reason, frames)
    return target
