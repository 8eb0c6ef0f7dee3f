"""DINOv2 features computed once per frame, so training steps skip the frozen encoders.

Upstream recomputes DINOv2 on every step because it colour-jitters the images first; a frozen
encoder on an unjittered frame always gives the same tokens, so with jitter off the tokens can be
computed once per recorded frame and read back (the cost of a training step then no longer includes
two ViT forwards at 518x518). The cache is built in eval mode under no_grad, with the same autocast
setting as the training steps, and stored as float32 (exact) or float16 (half the memory); with
`directory` set it lives in .npy memory maps there instead of RAM.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from export.model.dinov2 import IMAGE_SIZE, PATCH_SIZE
from export.train.forward import dino_features
from runtime.errors import ConfigError

log = logging.getLogger(__name__)
DTYPES = {"float32": np.float32, "float16": np.float16}
TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


class FeatureCache:
    def __init__(self, head: np.ndarray, wrist: np.ndarray) -> None:
        self.head, self.wrist = head, wrist

    @property
    def nbytes(self) -> int:
        return int(self.head.nbytes + self.wrist.nbytes)

    def get(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = frames.numpy()
        return torch.from_numpy(self.head[idx]).float(), torch.from_numpy(self.wrist[idx]).float()

    @classmethod
    def build(cls, policy, dataset, dtype: str = "float16", autocast: bool = False, batch_size: int = 8,
              directory: str | Path | None = None, progress: bool = True) -> FeatureCache:
        if dtype not in DTYPES:
            raise ConfigError(f"feature cache dtype '{dtype}' is unknown; choose one of {sorted(DTYPES)}")
        enc = policy.obs_encoder
        n = dataset.episodes.frames
        shapes = {"head": (n, TOKENS, enc.dino_head.embed_dim), "wrist": (n, TOKENS, enc.dino_wrist.embed_dim)}
        arrays = {}
        for key, shape in shapes.items():
            if directory is None:
                arrays[key] = np.empty(shape, dtype=DTYPES[dtype])
            else:
                Path(directory).mkdir(parents=True, exist_ok=True)
                arrays[key] = np.lib.format.open_memmap(Path(directory) / f"{key}.npy", mode="w+",
                                                        dtype=DTYPES[dtype], shape=shape)
        was_training = enc.training
        enc.eval()
        try:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), \
                    tqdm(total=n, desc="DINOv2 features", unit="frame", disable=not progress) as bar:
                for start in range(0, n, batch_size):
                    frames = np.arange(start, min(n, start + batch_size))
                    obs = dataset.frames_obs(frames)
                    head, wrist = dino_features(enc, obs["rgbm"], obs["right_cam_img"])
                    arrays["head"][frames] = head.float().numpy()
                    arrays["wrist"][frames] = wrist.float().numpy()
                    bar.update(len(frames))
        finally:
            enc.train(was_training)
        cache = cls(arrays["head"], arrays["wrist"])
        log.info("feature cache: %d frames, %.1f MB (%s%s)", n, cache.nbytes / 1e6, dtype,
                 f", {directory}" if directory else ", in memory")
        return cache
