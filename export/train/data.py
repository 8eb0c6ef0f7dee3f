"""Recorded episodes as upstream's MaskImageDataset samples them.

The runtime's recorder writes DexGraspVLA's zarr layout (runtime/recording/layout.py); this reads
every finished episode through `load_episode` (checksums verified, quarantined episodes never seen)
and samples training windows with upstream's semantics (controller/common/sampler.py with the
workspace cfg: horizon = n_action_steps = 64, n_obs_steps = 1, pad_before = 0, pad_after = 63):

- one window starts at every frame of every episode (L windows for an L-frame episode);
- the observation is the window's first frame (rgbm, right_cam_img, right_state);
- the action target is the next `horizon` recorded commands, consecutive frames (the recorder's
  frame rate IS the action spacing, 20 Hz upstream), the last command repeated past the episode end;
- images: /255, bilinear resize to 518x518 (align_corners=False); the mask channel: nearest resize,
  then > 0.5; channels first. Images stay BGR (the encoder flips them, as upstream's does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from export.model.dinov2 import IMAGE_SIZE
from export.model.obs_encoder import STATE_DIM
from runtime.errors import ConfigError

log = logging.getLogger(__name__)


def window_indices(episode_ends: np.ndarray, horizon: int, pad_before: int = 0, pad_after: int = 0) -> np.ndarray:
    """upstream create_indices: rows (buffer_start, buffer_end, sample_start, sample_end)."""
    pad_before = min(max(pad_before, 0), horizon - 1)
    pad_after = min(max(pad_after, 0), horizon - 1)
    rows = []
    start = 0
    for end in episode_ends.tolist():
        length = end - start
        for idx in range(-pad_before, length - horizon + pad_after + 1):
            b0 = max(idx, 0) + start
            b1 = min(idx + horizon, length) + start
            s0 = b0 - (idx + start)
            s1 = horizon - ((idx + horizon + start) - b1)
            rows.append((b0, b1, s0, s1))
        start = end
    return np.asarray(rows, dtype=np.int64).reshape(-1, 4)


def pad_window(values: np.ndarray, row: np.ndarray, horizon: int) -> np.ndarray:
    """values[b0:b1] placed at [s0:s1] of a horizon-long window, edges repeated (upstream sample_sequence)."""
    b0, b1, s0, s1 = row.tolist()
    sample = values[b0:b1]
    out = np.empty((horizon, *values.shape[1:]), dtype=values.dtype)
    out[:s0] = sample[0]
    out[s1:] = sample[-1]
    out[s0:s1] = sample
    return out


def resize_rgb(images: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, 518, 518) float in [0, 1], bilinear like upstream."""
    rgb = torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2)
    return F.interpolate(rgb / 255.0, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)


def resize_mask(masks: np.ndarray) -> torch.Tensor:
    """(T, H, W, 1) uint8 {0, 1} -> (T, 1, 518, 518) float {0, 1}, nearest then > 0.5 like upstream."""
    mask = torch.from_numpy(np.ascontiguousarray(masks)).float().permute(0, 3, 1, 2)
    return (F.interpolate(mask, size=(IMAGE_SIZE, IMAGE_SIZE), mode="nearest") > 0.5).float()


@dataclass
class EpisodeSet:
    """Every finished episode under a directory, concatenated (upstream ReplayBuffer layout)."""

    root: Path
    names: list[str]
    rgbm: np.ndarray  # (N, H, W, 4) uint8
    wrist: np.ndarray  # (N, h, w, 3) uint8
    state: np.ndarray  # (N, 13) float32
    action: np.ndarray  # (N, A) float32
    timestamp: np.ndarray  # (N,) float64
    episode_ends: np.ndarray  # (E,) int64, cumulative
    # Scene seeds of the MuJoCo episodes (their provenance's cameras.seed) plus those collect.json
    # lists: carried into the checkpoint so `dexgrasp eval` can refuse to evaluate on training scenes.
    scene_seeds: list[int] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.action.shape[0])

    def median_frame_interval_s(self) -> float | None:
        gaps = [np.diff(self.timestamp[s:e]) for s, e in zip([0, *self.episode_ends[:-1]], self.episode_ends, strict=True)]
        gaps = np.concatenate([g for g in gaps if g.size] or [np.zeros(0)])
        return float(np.median(gaps)) if gaps.size else None


def load_episodes(root: str | Path, action_dim: int, verify: bool = True) -> EpisodeSet:
    """Load and check every finished episode; ConfigError (one line) when there is nothing usable."""
    from runtime.recording import list_episodes, list_quarantined, load_episode

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--episodes '{root}' is not a directory")
    paths = list_episodes(root)
    if not paths:
        quarantined = len(list_quarantined(root))
        extra = f" ({quarantined} quarantined: cut by a crash)" if quarantined else ""
        raise ConfigError(f"--episodes '{root}' holds no finished episode (episode_*/MANIFEST.json){extra}")
    episodes = []
    for path in paths:
        try:
            episodes.append(load_episode(path, verify=verify))
        except (OSError, KeyError, ValueError) as exc:  # RecordingError is an OSError; zarr raises KeyError
            raise ConfigError(f"episode '{path}' cannot be used for training: {exc}") from exc
    for ep in episodes:
        d = ep.data
        if ep.frames == 0:
            raise ConfigError(f"episode '{ep.path}' has no frames")
        if d["action"].shape[1:] != (action_dim,):
            raise ConfigError(f"episode '{ep.path}': action has shape {d['action'].shape[1:]}, "
                              f"the model's action_dim is {action_dim}")
        if d["right_state"].shape[1:] != (STATE_DIM,):
            raise ConfigError(f"episode '{ep.path}': right_state has shape {d['right_state'].shape[1:]}, "
                              f"expected ({STATE_DIM},)")
        for key in ("rgbm", "right_cam_img"):
            if d[key].shape[1:] != episodes[0].data[key].shape[1:]:
                raise ConfigError(f"episode '{ep.path}': {key} frames are {d[key].shape[1:]}, "
                                  f"'{episodes[0].path}' has {episodes[0].data[key].shape[1:]}")
        for key in ("action", "right_state"):
            if not np.isfinite(d[key]).all():
                raise ConfigError(f"episode '{ep.path}': {key} contains NaN or Inf")

    def cat(key: str) -> np.ndarray:
        return np.concatenate([ep.data[key] for ep in episodes], axis=0)

    seeds = {s for s in (scene_seed(ep.info) for ep in episodes) if s is not None} | collect_seeds(root)
    return EpisodeSet(
        root=root, names=[ep.name for ep in episodes], rgbm=cat("rgbm"), wrist=cat("right_cam_img"),
        state=cat("right_state").astype(np.float32), action=cat("action").astype(np.float32),
        timestamp=cat("timestamp"), episode_ends=np.cumsum([ep.frames for ep in episodes]).astype(np.int64),
        scene_seeds=sorted(seeds),
    )


def scene_seed(info: dict) -> int | None:
    """The MuJoCo scene seed an episode was recorded on (cameras.seed of the config its provenance
    stores), or None when it was not recorded on the sim (a real robot's cameras.seed means nothing)."""
    cameras = (((info or {}).get("provenance") or {}).get("config") or {}).get("cameras") or {}
    if cameras.get("kind") != "mujoco" or not isinstance(cameras.get("seed"), int):
        return None
    return int(cameras["seed"])


def collect_seeds(root: Path) -> set[int]:
    """Every scene seed `dexgrasp sim collect` ran into `root` (its collect.json), failed episodes
    included: a scene the expert was shown is a training scene even if its recording was removed."""
    import json

    path = root / "collect.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    per = data.get("per_episode") if isinstance(data, dict) else None
    return {int(r["seed"]) for r in per or [] if isinstance(r, dict) and isinstance(r.get("seed"), int)}


class WindowDataset:
    """Training samples of an EpisodeSet: index i -> (observation frame, action window)."""

    def __init__(self, episodes: EpisodeSet, horizon: int, n_obs_steps: int = 1) -> None:
        if n_obs_steps != 1:
            raise ConfigError("n_obs_steps must be 1 (upstream: 'we currently do not support multi-step observation')")
        self.episodes = episodes
        self.horizon = horizon
        # upstream task cfg: pad_before = n_obs_steps - 1 + n_latency_steps = 0, pad_after = horizon - 1
        self.rows = window_indices(episodes.episode_ends, horizon, pad_before=0, pad_after=horizon - 1)

    def __len__(self) -> int:
        return len(self.rows)

    def obs_frame(self, i: int) -> int:
        """Buffer index of sample i's observation (first frame of the window, edge-padded)."""
        return int(self.rows[i][0])

    def actions(self, indices) -> torch.Tensor:
        """(B, horizon, A) float32 raw (unnormalised) action windows."""
        return torch.from_numpy(np.stack([pad_window(self.episodes.action, self.rows[i], self.horizon)
                                          for i in indices]))

    def frames_obs(self, frames, images: bool = True) -> dict[str, torch.Tensor]:
        """Observation dict for buffer frames (B,), each with T = 1: what upstream's dataset yields."""
        frames = np.asarray(frames, dtype=np.int64)
        ep = self.episodes
        out = {"right_state": torch.from_numpy(ep.state[frames]).unsqueeze(1)}
        rgbm = ep.rgbm[frames]
        mask = resize_mask(rgbm[..., 3:])
        if images:
            out["rgbm"] = torch.cat([resize_rgb(rgbm[..., :3]), mask], dim=1).unsqueeze(1)
            out["right_cam_img"] = resize_rgb(ep.wrist[frames]).unsqueeze(1)
        else:  # cached DINOv2 features stand in for the RGB: only the mask channel is needed
            out["mask"] = mask.unsqueeze(1)
        return out

    def batch(self, indices, images: bool = True) -> dict:
        indices = list(indices)
        frames = [self.obs_frame(i) for i in indices]
        return {"obs": self.frames_obs(frames, images), "action": self.actions(indices),
                "frames": torch.tensor(frames, dtype=torch.long)}
