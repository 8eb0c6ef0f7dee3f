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
from runtime.errors import ConfigError, ModelError, ObservationError

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


def require_verified(manifest: Manifest, model_dir: pathlib.Path, backend: str, precision: str,
                     allow_unverified: bool, verify_command: str | None = None,
                     allow_option: str = "policy.allow_unverified") -> dict | None:
    """The passing verification record for backend+precision, or a one-line ModelError saying why
    the model may not start (no record, or one for other graphs) unless `allow_unverified`.
    Any manifest with `verification(backend, precision)` works (the tracker's too); the hint names
    `verify_command` (default: `dexgrasp engine verify ...`) and `allow_option`."""
    record = manifest.verification(backend, precision)
    if record is not None:
        return record
    if allow_unverified:
        log.warning("%s: %s %s runs unverified (allow_unverified)", model_dir, backend, precision)
        return None
    command = verify_command or f"dexgrasp engine verify --model {model_dir} --backend {backend} --precision {precision}"
    raise ModelError(
        f"{model_dir} has no passing accuracy verification for {backend} {precision} of its current graphs; run "
        f"`{command}` or start with --allow-unverified / {allow_option}: true")


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
        self.backend, self.precision = getattr(encoder, "name", "?"), manifest.precision
        # bind the K/V once per inference when the denoiser backend can (False: pass it every
        # step, the fallback, kept switchable for measurements)
        self.bind_kv = True

    @classmethod
    def from_dir(cls, model_dir: str | pathlib.Path, backend: str = "onnxruntime", precision: str = "fp32",
                 threads: int | None = None, providers: list | None = None, allow_unverified: bool = False,
                 cache_dir: str | pathlib.Path | None = None, **backend_options) -> Controller:
        """Load an exported controller directory (manifest.json + graphs or engines).

        precision: "fp32" or the backend's reduced-precision recipe ("bf16" on openvino, "fp16"
        engines on tensorrt); a reduced precision needs a passing `dexgrasp engine verify` in the
        manifest unless `allow_unverified`. threads/providers/cache_dir go to the backends that
        take them. Blocks while the graphs load or compile (seconds; cached compiles are faster).
        """
        from runtime.inference.base import BACKENDS, open_backend

        model_dir = pathlib.Path(model_dir)
        manifest = Manifest.load(model_dir)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown inference backend '{backend}'; choose one of {list(BACKENDS)}")
        if backend != "tensorrt":  # engines are built on the target from the verified ONNX graphs
            verify_graph_hashes(model_dir, manifest, names=(ENCODER, DENOISER))
        if precision != "fp32":
            require_verified(manifest, model_dir, backend, precision, allow_unverified)
        per_graph = {ENCODER: dict(backend_options), DENOISER: dict(backend_options)}
        if backend == "onnxruntime":
            if precision != "fp32":
                raise ModelError(f"the onnxruntime backend runs fp32 only, not '{precision}'; use --backend "
                                 "openvino --precision bf16 (CPU) or --backend tensorrt (GPU)")
            for opts in per_graph.values():
                opts.update(providers=providers, threads=threads)
        elif backend == "openvino":
            from runtime.inference.openvino import check_precision, precision_for

            check_precision(precision)
            for name, opts in per_graph.items():
                opts.update(precision=precision_for(precision, name), threads=threads, cache_dir=cache_dir)
        elif backend == "tensorrt":  # the engine's sidecar must say it was built for this precision
            for opts in per_graph.values():
                opts.update(precision=precision, threads=threads)
        encoder = open_backend(backend, model_dir, manifest.graph(ENCODER), **per_graph[ENCODER])
        denoiser = open_backend(backend, model_dir, manifest.graph(DENOISER), **per_graph[DENOISER])
        link = getattr(denoiser, "bind_device_outputs", None)
        if link is not None:  # TensorRT: the denoiser reads the K/V in the encoder's device buffers
            link(encoder, kv_names(int(manifest.arch["n_layer"])))
        controller = cls(manifest, encoder, denoiser, model_dir)
        controller.backend, controller.precision = backend, precision
        return controller

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
        bind = getattr(self.denoiser, "bind_static", None) if self.bind_kv else None
        static = kv
        if bind is not None:
            bind(kv)  # once per inference: each step then hands over only sample + timestep
            static = {}
        for t in self.sampler.timesteps:
            timestep = np.asarray([t], dtype=self.timestep_dtype)
            eps = self.denoiser.run({SAMPLE: sample, TIMESTEP: timestep, **static})[EPSILON]
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
