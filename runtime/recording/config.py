"""Recorder settings: the `recording:` section of a runtime config (or `--record DIR`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from runtime.errors import ConfigError
from runtime.joint_space import DEFAULT_ARM_NAMES, DEFAULT_HAND_NAMES

COMPRESSORS = ("lz4", "zstd", "none")


@dataclass(frozen=True)
class RecordingConfig:
    """Where and how episodes are written.

    chunk_frames: frames per zarr chunk and per journal entry; a crash loses at most the frames of
        the chunk being filled (plus what was still queued). Smaller = less lost, more files.
    writer_nice: nice increment of the process writer. 0 by default: kept off the loop's CPU on a
        2-core machine, a writer at nice 10 got too little of the other CPU beside inference and
        dropped 197 of 932 frames in a 40 s sim run; at nice 0 it dropped none, and the policy's
        latency did not change measurably (p50 2.7 s vs 2.8 s).
    writer_cpu_affinity: CPUs the writer (and the threads it starts) may run on. Writing a zarr chunk
        is a few large write() calls; on a kernel without full preemption (PREEMPT_NONE/VOLUNTARY)
        each runs to its end, so a control loop woken on the same CPU waits for it: measured here,
        p99 lateness of a SCHED_FIFO 200 Hz loop 4.5 ms with the writer anywhere, 0.08 ms with the
        writer kept off the loop's CPU. make_recorder fills it with the CPUs that
        control.realtime.cpu_affinity leaves free.
    video_height: the episode video's height in pixels. The video is for people to watch (the full
        resolution is in the zarr arrays); encoding 640x480 panels at full size cost ~10 ms a frame
        on this 2-core CPU, a quarter of the writer's budget, so they are scaled down first.
    queue_frames: frames buffered between the runtime and the writer thread; beyond it frames are
        dropped and counted (the runtime never waits for the disk).
    state_dim: joints per state / action row. make_recorder sets it from the runtime config's joint
        space (robot.n_joints); the default is the joint space of a config that names no joints
        (upstream's 7 arm + 6 hand). A frame of another width is dropped and counted, never padded.
    arm_joint_limits: optional {"lower": [n], "upper": [n]} (robot units, one per arm joint). When
        given, the first n state/action values are stored scaled to [-1, 1] like upstream's get_state(); without it
        they are stored as the runtime hands them over.
    """

    dir: str
    video: bool = True
    video_fps: float = 20.0
    video_height: int = 240  # the video is for people: frames taller than this are scaled down (0: keep)
    chunk_frames: int = 16
    queue_frames: int = 64
    compressor: str = "lz4"
    min_free_mb: float = 256.0
    fsync: bool = True
    state_dim: int = len(DEFAULT_ARM_NAMES) + len(DEFAULT_HAND_NAMES)
    max_pending_frames: int = 8
    arm_joint_limits: dict | None = None
    raw_joint_units: bool = False  # make_recorder: do not take arm limits from the runtime config
    writer: str = "process"  # "process" (no GIL shared with the control loop) or "thread"
    writer_nice: int = 0  # process writer: nice increment; >0 trades dropped frames for inference time
    writer_cpu_affinity: list[int] | None = None  # CPUs for the writer; None: the ones the control loop is not pinned to

    @classmethod
    def from_dict(cls, raw: dict | None, where: str = "recording") -> RecordingConfig:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")
        if not raw.get("dir"):
            raise ConfigError(f"{where}.dir: a directory to record into is required")
        cfg = cls(**raw)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "recording") -> None:
        if not isinstance(self.dir, (str, Path)) or not str(self.dir):
            raise ConfigError(f"{where}.dir: expected a path, got {self.dir!r}")
        if not isinstance(self.video_height, int) or isinstance(self.video_height, bool) or self.video_height < 0:
            raise ConfigError(f"{where}.video_height: expected an integer >= 0 (0 keeps the camera height), "
                              f"got {self.video_height!r}")
        cpus = self.writer_cpu_affinity
        if cpus is not None and not (isinstance(cpus, (list, tuple)) and cpus and all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus)):
            raise ConfigError(f"{where}.writer_cpu_affinity: expected a non-empty list of CPU numbers, got {cpus!r}")
        if not isinstance(self.writer_nice, int) or not 0 <= self.writer_nice <= 19:
            raise ConfigError(f"{where}.writer_nice: expected an integer in 0..19, got {self.writer_nice!r}")
        for name in ("chunk_frames", "queue_frames", "state_dim", "max_pending_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}.{name}: expected a positive integer, got {value!r}")
        for name in ("video_fps",):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}.{name}: expected a positive number, got {value!r}")
        if not (isinstance(self.min_free_mb, (int, float)) and self.min_free_mb >= 0):
            raise ConfigError(f"{where}.min_free_mb: expected a number >= 0, got {self.min_free_mb!r}")
        if self.writer not in ("process", "thread"):
            raise ConfigError(f"{where}.writer: expected 'process' or 'thread', got {self.writer!r}")
        if self.compressor not in COMPRESSORS:
            raise ConfigError(f"{where}.compressor: expected one of {list(COMPRESSORS)}, got {self.compressor!r}")
        if self.arm_joint_limits is not None:
            lim = self.arm_joint_limits
            # One value per arm joint (the config's joint space: upstream's arm has 7), at most state_dim.
            ok = isinstance(lim, dict) and set(lim) == {"lower", "upper"} and all(
                isinstance(lim[k], (list, tuple)) and 1 <= len(lim[k]) <= self.state_dim for k in ("lower", "upper")
            ) and len(lim["lower"]) == len(lim["upper"])
            if not ok:
                raise ConfigError(f"{where}.arm_joint_limits: expected {{lower: [n numbers], upper: [n numbers]}} with "
                                  f"one per arm joint (n <= state_dim {self.state_dim}), got {lim!r}")
            if any(hi <= lo for lo, hi in zip(lim["lower"], lim["upper"], strict=True)):
                raise ConfigError(f"{where}.arm_joint_limits: every upper must exceed its lower, got {lim!r}")
