"""Reading recorded episodes for export and evaluation: verified, in radians, on a fixed clock.

Every consumer here goes through `open_episodes`, which refuses the whole set if any episode is
tampered (checksum mismatch), truncated (no manifest: cut by a crash or still being written) or
quarantined by name: a dataset built from part of a recording is worse than none, because nobody
notices what is missing.

Joint space. The recorder stores the arm in upstream's [-1, 1] (scaled by the robot's arm limits)
unless `recording.raw_joint_units` was set; episode.json says which ("joint_units", newer
recordings) and its provenance holds the robot section as loaded (joint names, limits). Older
episodes without either are taken as [-1, 1] with the default limits (flagged "assumed").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.data import DataError

ARM = 7


@dataclass(frozen=True)
class JointSpace:
    names: tuple[str, ...]
    arm_lower: np.ndarray  # (7,) rad
    arm_upper: np.ndarray

    def arm_to_rad(self, normalized: np.ndarray) -> np.ndarray:
        out = np.array(normalized, dtype=np.float64, copy=True)
        out[..., :ARM] = self.arm_lower + (out[..., :ARM] + 1.0) * 0.5 * (self.arm_upper - self.arm_lower)
        return out.astype(np.float32)

    def arm_to_normalized(self, rad: np.ndarray) -> np.ndarray:
        out = np.array(rad, dtype=np.float64, copy=True)
        out[..., :ARM] = 2.0 * (out[..., :ARM] - self.arm_lower) / (self.arm_upper - self.arm_lower) - 1.0
        return out.astype(np.float32)


def joint_space(info: dict, robot: dict | None = None) -> tuple[JointSpace, bool, str]:
    """(space, stored_normalized, how) for an episode's episode.json `info`; `robot` overrides
    the robot section recorded in its provenance."""
    from runtime.config.schema import DEFAULT_ARM_LOWER_RAD, DEFAULT_ARM_UPPER_RAD, DEFAULT_JOINT_NAMES

    prov_robot = (((info.get("provenance") or {}).get("config") or {}).get("robot") or {})
    robot = {**prov_robot, **(robot or {})}
    names = tuple(robot.get("joint_names") or DEFAULT_JOINT_NAMES)
    lower = np.asarray(robot.get("arm_lower_rad") or DEFAULT_ARM_LOWER_RAD, dtype=np.float64)
    upper = np.asarray(robot.get("arm_upper_rad") or DEFAULT_ARM_UPPER_RAD, dtype=np.float64)
    units = info.get("joint_units")
    if isinstance(units, dict):
        limits = units.get("arm_joint_limits")
        if limits:  # the recorder scaled with these limits: undo with the same ones
            lower = np.asarray(limits["lower"], dtype=np.float64)
            upper = np.asarray(limits["upper"], dtype=np.float64)
            return JointSpace(names, lower, upper), True, "recorded [-1, 1] with the recorder's arm_joint_limits"
        return JointSpace(names, lower, upper), False, "recorded in robot units (raw_joint_units)"
    return JointSpace(names, lower, upper), True, "assumed [-1, 1] with the robot's limits (no joint_units recorded)"


def episode_dirs(root: str | Path) -> list[Path]:
    """The episode directories under root (or root itself when it is one), refusing unfinished ones."""
    from runtime.recording.layout import EPISODE_RE, MANIFEST, QUARANTINE_DIR, QUARANTINE_NOTE

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--episodes '{root}' is not a directory")
    if EPISODE_RE.match(root.name) or (root / MANIFEST).exists() or (root / QUARANTINE_NOTE).exists():
        candidates = [root]
    else:
        candidates = sorted(p for p in root.iterdir() if p.is_dir() and EPISODE_RE.match(p.name))
    if not candidates:
        quarantined = root / QUARANTINE_DIR
        hint = f" ({len(list(quarantined.iterdir()))} quarantined ones under {quarantined})" if quarantined.is_dir() else ""
        raise DataError(f"no recorded episodes under '{root}'{hint}")
    for path in candidates:
        if (path / QUARANTINE_NOTE).exists() or path.parent.name == QUARANTINE_DIR:
            raise DataError(f"{path.name} is quarantined (cut by a crash or a disk error); "
                            "salvage it with runtime.recording.salvage_episode or leave it out")
        if not (path / MANIFEST).is_file():
            raise DataError(f"{path.name} is truncated: no {MANIFEST} (the recorder never finished it); "
                            "nothing was exported")
    return candidates


def load_verified(path: Path):
    """load_episode with checksums, its RecordingError turned into a one-line DataError."""
    from runtime.recording import RecordingError, load_episode

    try:
        ep = load_episode(path, verify=True)
    except RecordingError as exc:
        raise DataError(f"{path.name} refused: {exc}") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path.name} refused: unreadable episode ({type(exc).__name__}: {exc})") from exc
    ts = ep.data["timestamp"]
    if ts.size and not (np.all(np.isfinite(ts)) and np.all(np.diff(ts) > 0)):
        raise DataError(f"{path.name} refused: frame timestamps are not finite and strictly increasing")
    return ep


def resample_indices(timestamps: np.ndarray, fps: float) -> np.ndarray:
    """Sample-and-hold onto a fixed clock: output frame k (time t0 + k / fps, k = 0 .. floor((tN - t0)
    * fps)) is the last recorded frame captured at or before that time. Recorded frames between two
    ticks are dropped; a camera gap repeats the last frame (no image is ever interpolated, so every
    exported image is one the robot saw, paired with the state and command recorded with it)."""
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    n_out = int(np.floor((ts[-1] - ts[0]) * fps + 1e-9)) + 1
    ticks = ts[0] + np.arange(n_out) / fps
    return np.searchsorted(ts, ticks + 1e-9, side="right").astype(np.int64) - 1
