"""Controller: policy inputs -> un-normalized action chunk, with the exported graphs. Torch-free.

Per call: the encoder graph turns the observations into the per-layer cross-attention K/V of the
2739 observation tokens (once), then the numpy DDIM loop calls the denoiser graph at each of the
`num_inference_steps` timesteps, then the action normalizer is inverted: x = (y - offset) / scale.

Action convention (upstream's): 13 values per step, 7 arm joints then 6 hand joints. The arm part is
in upstream's normalized joint space ([-1, 1] maps to the joint limits); scaling to joint limits
belongs to the execution layer, exactly as upstream's `execute_action` does.
"""

from __future__ import annotations

import logging
import pathlib
import time

import numpy as np

from runtime.controller.ddim import DDIMSampler
from runtime.controller.integrity import check_normalizer, verify_graph_hashes
from runtime.controller.manifest import (
    DENOISER,
    ENCODER,
    EPSILON,
    OBS_INPUTS,
    SAMPLE,
    TIMESTEP,
    Manifest,
    kv_names,
)
from runtime.errors import ModelError, ObservationError

log = logging.getLogger(__name__)


def validate_obs(obs: dict, specs) -> dict[str, np.ndarray]:
    """Check names, shapes, dtypes and finiteness; raise ObservationError naming the bad input."""
    if not isinstance(obs, dict):
        raise ObservationError(f"observations must be a dict of arrays, got {type(obs).__name__}")
    out = {}
    for spec in specs:
        if spec.name not in obs:
            raise ObservationError(f"observation '{spec.name}' is missing (got {sorted(obs)})")
        value = obs[spec.name]
        if not isinstance(value, np.ndarray):
            raise ObservationError(f"observation '{spec.name}' must be a numpy array, got {type(value).__name__}")
        if list(value.shape) != list(spec.shape):
            raise ObservationError(
                f"observation '{spec.name}' has shape {tuple(value.shape)}, expected {tuple(spec.shape)}"
            )
        if value.dtype != np.dtype(spec.dtype):
            raise ObservationError(f"observation '{spec.name}' has dtype {value.dtype}, expected {spec.dtype}")
        if not np.isfinite(value).all():
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise ObservationError(f"observation '{spec.name}' contains {bad} NaN/Inf values")
        out[spec.name] = np.ascontiguousarray(value)
    return out


class Controller:
    """An exported DexGraspVLA controller.

    `predict` blocks for one full inference (encoder + all DDIM steps): seconds on a CPU, tens of
    milliseconds on a GPU. It is not thread-safe; use one Controller per worker thread.
    """

    def __init__(self, manifest: Manifest, encoder, denoiser, model_dir: pathlib.Path | None = None) -> None:
        self.manifest = manifest
        self.model_dir = model_dir
        self.encoder = encoder
        self.denoiser = denoiser
        self.sampler = DDIMSampler(manifest.scheduler, manifest.num_inference_steps)
        check_normalizer(manifest)
        self.scale = np.asarray(manifest.normalizer["scale"], dtype=np.float32)
        self.offset = np.asarray(manifest.normalizer["offset"], dtype=np.float32)
        if self.scale.shape != (manifest.action_dim,) or self.offset.shape != (manifest.action_dim,):
            raise ModelError(
                f"manifest normalizer has {self.scale.shape}/{self.offset.shape} values, "
                f"expected {manifest.action_dim}"
            )
        self.obs_specs = manifest.graph(ENCODER).inputs
        self.sample_shape = tuple(manifest.graph(DENOISER).input(SAMPLE).shape)
        self.timestep_dtype = np.dtype(manifest.graph(DENOISER).input(TIMESTEP).dtype)
        self.kv_names = kv_names(int(manifest.arch["n_layer"]))
        self.last_timing: dict[str, float] = {}

    @classmethod
    def from_dir(cls, model_dir: str | pathlib.Path, backend: str = "onnxruntime", providers: list | None = None,
                 threads: int | None = None, **backend_options) -> Controller:
        """Load an exported controller directory (manifest.json + graphs or engines)."""
        from runtime.inference.base import open_backend

        model_dir = pathlib.Path(model_dir)
        manifest = Manifest.load(model_dir)
        if backend != "tensorrt":  # engines are built on the target from the verified ONNX graphs
            verify_graph_hashes(model_dir, manifest, names=(ENCODER, DENOISER))
        if backend == "onnxruntime":
            backend_options.update(providers=providers, threads=threads)
        encoder = open_backend(backend, model_dir, manifest.graph(ENCODER), **backend_options)
        denoiser = open_backend(backend, model_dir, manifest.graph(DENOISER), **backend_options)
        return cls(manifest, encoder, denoiser, model_dir)

    @property
    def action_shape(self) -> tuple[int, int]:
        return (self.manifest.action_horizon, self.manifest.action_dim)

    def _initial_noise(self, noise: np.ndarray | None, seed: int | None) -> np.ndarray:
        if noise is None:
            return np.random.default_rng(seed).standard_normal(self.sample_shape).astype(np.float32)
        noise = np.asarray(noise)
        if noise.size != int(np.prod(self.sample_shape)) or noise.shape[-2:] != self.sample_shape[-2:]:
            raise ObservationError(f"noise has shape {noise.shape}, expected {self.sample_shape}")
        if not np.issubdtype(noise.dtype, np.floating) or not np.isfinite(noise).all():
            raise ObservationError("noise must be finite floating point values")
        return noise.astype(np.float32).reshape(self.sample_shape)

    def encode(self, obs: dict) -> dict[str, np.ndarray]:
        """Observations -> cached cross-attention K/V per layer ({'obs_k_0': ..., 'obs_vt_0': ..., ...})."""
        inputs = validate_obs({k: obs[k] for k in OBS_INPUTS if k in obs}, self.obs_specs)
        out = self.encoder.run(inputs)
        return {name: out[name] for name in self.kv_names}

    def denoise(self, kv: dict[str, np.ndarray], sample: np.ndarray) -> np.ndarray:
        """The DDIM loop from the initial `sample`, returning the normalized action chunk."""
        for t in self.sampler.timesteps:
            timestep = np.asarray([t], dtype=self.timestep_dtype)
            eps = self.denoiser.run({SAMPLE: sample, TIMESTEP: timestep, **kv})[EPSILON]
            sample = self.sampler.step(eps.astype(np.float32, copy=False), int(t), sample)
        return sample

    def predict(self, obs: dict, noise: np.ndarray | None = None, seed: int | None = None) -> np.ndarray:
        """Policy inputs (as from `process_obs`) -> action chunk (horizon, action_dim) float32, un-normalized.

        `noise` is the initial DDIM sample (1, horizon, action_dim); without it one is drawn from
        `seed` (None: fresh entropy). Raises ObservationError for malformed inputs.
        """
        t0 = time.perf_counter()
        sample = self._initial_noise(noise, seed)
        kv = self.encode(obs)
        t1 = time.perf_counter()
        sample = self.denoise(kv, sample)
        action = ((sample.reshape(self.action_shape) - self.offset) / self.scale).astype(np.float32)
        t2 = time.perf_counter()
        self.last_timing = {
            "encoder_ms": (t1 - t0) * 1e3,
            "denoise_ms": (t2 - t1) * 1e3,
            "total_ms": (t2 - t0) * 1e3,
        }
        if not np.isfinite(action).all():
            raise ModelError("the controller produced non-finite actions (corrupt model?)")
        return action

    def close(self) -> None:
        for backend in (self.encoder, self.denoiser):
            backend.close()
