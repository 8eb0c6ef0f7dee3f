"""Calibration inputs for int8 engines: what the graphs see when the robot runs.

The encoder is calibrated on observations from recorded episodes (evenly spaced frames, through
the runtime's own process_obs, so resizing and the mask channel are as in deployment), synthetic
ones when no episodes are given. The denoiser's inputs are not recorded anywhere: they are made by
running the fp32 ONNX graphs (ONNX Runtime, CPU) on those observations through the DDIM loop and
keeping every other step's (sample, timestep, K/V). Steps of one observation share its K/V arrays,
so at paper size the memory is ~270 MB per observation, not per batch.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from runtime.controller.manifest import DENOISER, ENCODER, EPSILON, SAMPLE, TIMESTEP, Manifest, kv_names
from runtime.errors import ConfigError

log = logging.getLogger(__name__)


def episode_observations(root: str | pathlib.Path, limit: int) -> list[dict]:
    """Up to `limit` policy inputs from the recorded episodes under `root`, spread over episodes
    and frames."""
    from runtime.controller.preprocess import process_obs
    from runtime.recording.store import iter_episodes

    root = pathlib.Path(root)
    if not root.is_dir():
        raise ConfigError(f"--calibration {root}: not a directory of recorded episodes")
    episodes = list(iter_episodes(root))
    if not episodes:
        raise ConfigError(f"--calibration {root}: no finished episodes there")
    per = max(1, -(-limit // len(episodes)))
    out: list[dict] = []
    for ep in episodes:
        n = ep.frames
        for i in np.unique(np.linspace(0, n - 1, num=min(per, n)).astype(int)):
            rgbm = ep.data["rgbm"][i]
            out.append(process_obs(rgbm[..., :3], rgbm[..., 3], ep.data["right_cam_img"][i], ep.data["right_state"][i]))
            if len(out) >= limit:
                return out
    return out


def synthetic_observations(manifest: Manifest, count: int, seed: int = 0) -> list[dict]:
    """Random images with a half-covered mask channel and states in [-1, 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        obs = {t.name: rng.random(t.shape, dtype=np.float32) for t in manifest.graph(ENCODER).inputs}
        if "rgbm" in obs:
            obs["rgbm"][:, :, 3] = (obs["rgbm"][:, :, 3] > 0.5).astype(np.float32)
        if "right_state" in obs:
            obs["right_state"] = obs["right_state"] * 2 - 1
        out.append(obs)
    return out


def controller_calibration(model_dir: str | pathlib.Path, manifest: Manifest, episodes=None,
                           limit: int = 32, steps_kept: int = 8) -> dict[str, list[dict]]:
    """{'encoder': [obs], 'denoiser': [inputs]} for int8 calibration; ~`limit` batches each."""
    from runtime.controller.ddim import DDIMSampler
    from runtime.inference.onnxruntime import OrtBackend

    model_dir = pathlib.Path(model_dir)
    obs = episode_observations(episodes, limit) if episodes else synthetic_observations(manifest, limit)
    enc = OrtBackend(model_dir / manifest.graph(ENCODER).file, manifest.graph(ENCODER))
    den = OrtBackend(model_dir / manifest.graph(DENOISER).file, manifest.graph(DENOISER))
    sampler = DDIMSampler(manifest.scheduler, manifest.num_inference_steps)
    names = kv_names(int(manifest.arch["n_layer"]))
    keep_every = max(1, len(sampler.timesteps) // max(1, steps_kept))
    n_obs = max(1, limit // max(1, len(sampler.timesteps) // keep_every))
    rng = np.random.default_rng(0)
    shape = tuple(manifest.graph(DENOISER).input(SAMPLE).shape)
    den_batches: list[dict] = []
    for o in obs[:n_obs]:
        out = enc.run(o)
        kv = {n: out[n] for n in names}
        sample = rng.standard_normal(shape).astype(np.float32)
        for k, t in enumerate(sampler.timesteps):
            feed = {SAMPLE: sample, TIMESTEP: np.asarray([t], np.float32), **kv}
            if k % keep_every == 0:
                den_batches.append({**feed, SAMPLE: sample.copy()})
            sample = sampler.step(den.run(feed)[EPSILON], int(t), sample)
    enc.close()
    den.close()
    log.info("calibration: %d encoder and %d denoiser batches (%s)", len(obs), len(den_batches),
             "episodes" if episodes else "synthetic")
    return {ENCODER: obs, DENOISER: den_batches}
