"""Recorded episodes as upstream's MaskImageDataset samples them.

The runtime's recorder writes DexGraspVLA's zarr layout (runtime/recording/layout.py); this reads
every finished episode through `load_episode` (checksums verified, quarantined episodes never seen)
and samples training windows with upstream's semantics (controller/common/sampler.py with the
workspace cfg: horizon = n_action_steps = 64, n_obs_steps = 1, pad_before = 0, pad_after = 63):

- one window starts at every grid step of every episode (L windows for L steps);
- the observation is the frame the window's first step holds (rgbm, right_cam_img, right_state);
- every episode is first put on the action-rate grid (export/train/timeline.py): one step per
  1 / action_rate_hz (20 Hz, upstream's data rate, the rate the runtime plays a chunk at), each the
  last frame recorded at or before its tick, whatever the camera rate of the recording;
- the action target is the next `horizon` commands on that grid, the last one repeated past the
  episode end;
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
from export.train.timeline import (
    UPSTREAM_ACTION_RATE_HZ,
    Timeline,
    build_timeline,
    check_action_rate,
    episode_grid,
)
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
    """Every finished episode under a directory, concatenated (upstream ReplayBuffer layout): the
    frames its action-rate grid uses, in recorded order; `timeline` maps grid steps to them."""

    root: Path
    names: list[str]
    rgbm: np.ndarray  # (N, H, W, 4) uint8
    wrist: np.ndarray  # (N, h, w, 3) uint8
    state: np.ndarray  # (N, S) float32, S = the model's state_dim (upstream 13)
    action: np.ndarray  # (N, A) float32
    timestamp: np.ndarray  # (N,) float64
    episode_ends: np.ndarray  # (E,) int64, cumulative
    timeline: Timeline  # action-rate steps -> frames above, per episode
    # Scene seeds of the MuJoCo episodes (their provenance's cameras.seed) plus those collect.json
    # lists: carried into the checkpoint so `dexgrasp eval` can refuse to evaluate on training scenes.
    scene_seeds: list[int] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.action.shape[0])

    def median_frame_interval_s(self) -> float | None:
        """Of the recording (every recorded frame, not only the kept ones)."""
        return self.timeline.recorded_interval_s


def load_episodes(root: str | Path, action_dim: int, verify: bool = True, state_dim: int | None = None, *,
                  action_rate_hz: float = UPSTREAM_ACTION_RATE_HZ) -> EpisodeSet:
    """Load and check every finished episode; ConfigError (one line) when there is nothing usable.

    The episodes must be as wide as the model: `action_dim` commands and `state_dim` joint states
    per frame (None: action_dim; the recorder writes both with the robot's joint count). Episodes of
    another robot are refused, naming both widths, instead of training on misaligned joints."""
    state_dim = action_dim if state_dim is None else state_dim
    from runtime.recording import list_episodes, list_quarantined, load_episode

    rate = check_action_rate(action_rate_hz)
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
        got = (tuple(d["action"].shape[1:]), tuple(d["right_state"].shape[1:]))
        if got != ((action_dim,), (state_dim,)):
            raise ConfigError(
                f"episode '{ep.path}' is {_width(got[0])} action x {_width(got[1])} state wide, the model "
                f"is {action_dim} x {state_dim} (action_dim x state_dim): recorded on another robot's joint "
                "space? train with that robot's --config, or record on this one")
        for key in ("rgbm", "right_cam_img"):
            if d[key].shape[1:] != episodes[0].data[key].shape[1:]:
                raise ConfigError(f"episode '{ep.path}': {key} frames are {d[key].shape[1:]}, "
                                  f"'{episodes[0].path}' has {episodes[0].data[key].shape[1:]}")
        for key in ("action", "right_state"):
            if not np.isfinite(d[key]).all():
                raise ConfigError(f"episode '{ep.path}': {key} contains NaN or Inf")

    grids = [episode_grid(ep.data["timestamp"], rate, ep.name) for ep in episodes]

    def cat(key: str) -> np.ndarray:  # only the frames some grid step holds
        return np.concatenate([ep.data[key][g.kept] for ep, g in zip(episodes, grids, strict=True)], axis=0)

    seeds = {s for s in (scene_seed(ep.info) for ep in episodes) if s is not None} | collect_seeds(root)
    return EpisodeSet(
        root=root, names=[ep.name for ep in episodes], rgbm=cat("rgbm"), wrist=cat("right_cam_img"),
        state=cat("right_state").astype(np.float32), action=cat("action").astype(np.float32),
        timestamp=cat("timestamp"), episode_ends=np.cumsum([g.kept.size for g in grids]).astype(np.int64),
        timeline=build_timeline(grids, rate), scene_seeds=sorted(seeds),
    )


def _width(shape: tuple) -> str:
    return str(shape[0]) if len(shape) == 1 else f"{list(shape)}"


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
    """Training samples of an EpisodeSet: index i -> (observation frame, action window), one per
    action-rate step (the windows run over the episodes' timeline, not over recorded frames)."""

    def __init__(self, episodes: EpisodeSet, horizon: int, n_obs_steps: int = 1) -> None:
        if n_obs_steps != 1:
            raise ConfigError("n_obs_steps must be 1 (upstream: 'we currently do not support multi-step observation')")
        self.episodes = episodes
        self.horizon = horizon
        self.steps = episodes.timeline.ticks  # step -> frame
        self.step_actions = episodes.action[self.steps]  # (M, A): the command in force at each step
        # upstream task cfg: pad_before = n_obs_steps - 1 + n_latency_steps = 0, pad_after = horizon - 1
        self.rows = window_indices(episodes.timeline.ends, horizon, pad_before=0, pad_after=horizon - 1)

    def __len__(self) -> int:
        return len(self.rows)

    def obs_frame(self, i: int) -> int:
        """Buffer index of sample i's observation (the frame the window's first step holds)."""
        return int(self.steps[self.rows[i][0]])

    def actions(self, indices) -> torch.Tensor:
        """(B, horizon, A) float32 raw (unnormalised) action windows."""
        return torch.from_numpy(np.stack([pad_window(self.step_actions, self.rows[i], self.horizon)
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
