"""numpy DDIM sampler equal to diffusers' DDIMScheduler (eta = 0), step for step.

Same float32 arithmetic in the same order as diffusers (betas, cumulative product, timestep
spacing, clip_sample / thresholding off, set_alpha_to_one, epsilon / sample / v_prediction), so the
exported controller reproduces upstream's `conditional_sample`. Torch-free.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.errors import ModelError

F32 = np.float32


def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(dtype=float32): float32 step, first half from start, second half from end,
    each value start + step * i rounded once (the CPU kernel uses fused multiply-add)."""
    start32, end32 = F32(start), F32(end)
    if steps == 1:
        return np.asarray([start32], dtype=F32)
    step = (end32 - start32) / F32(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    front = (np.float64(start32) + np.float64(step) * i).astype(F32)
    back = (np.float64(end32) - np.float64(step) * (steps - 1 - i)).astype(F32)
    return np.where(i < half, front, back).astype(F32)


def _betas(config: dict) -> np.ndarray:
    n = int(config.get("num_train_timesteps", 1000))
    schedule = config.get("beta_schedule", "linear")
    beta_start = float(config.get("beta_start", 0.0001))
    beta_end = float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        return np.asarray(config["trained_betas"], dtype=F32)
    if schedule == "linear":
        return _torch_linspace_f32(beta_start, beta_end, n)
    if schedule == "scaled_linear":
        return _torch_linspace_f32(beta_start**0.5, beta_end**0.5, n) ** 2
    if schedule == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)]
        return np.asarray(betas, dtype=F32)
    raise ModelError(f"DDIM beta_schedule '{schedule}' is not supported")


class DDIMSampler:
    """Deterministic DDIM (eta = 0) matching diffusers.DDIMScheduler for the given config dict."""

    def __init__(self, config: dict, num_inference_steps: int) -> None:
        self.config = dict(config)
        if self.config.get("thresholding", False):
            raise ModelError("DDIM thresholding is not supported by the runtime sampler")
        if self.config.get("rescale_betas_zero_snr", False):
            raise ModelError("DDIM rescale_betas_zero_snr is not supported by the runtime sampler")
        self.num_train_timesteps = int(self.config.get("num_train_timesteps", 1000))
        if not 0 < num_inference_steps <= self.num_train_timesteps:
            raise ModelError(
                f"num_inference_steps {num_inference_steps} must be in 1..{self.num_train_timesteps}"
            )
        self.num_inference_steps = int(num_inference_steps)
        self.prediction_type = self.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ModelError(f"DDIM prediction_type '{self.prediction_type}' is not supported")
        self.clip_sample = bool(self.config.get("clip_sample", True))
        self.clip_sample_range = F32(self.config.get("clip_sample_range", 1.0))
        betas = _betas(self.config)
        alphas = F32(1.0) - betas
        # torch.cumprod accumulates float32 in double on CPU; so do we, to match bit for bit.
        self.alphas_cumprod = np.cumprod(alphas.astype(np.float64)).astype(F32)
        self.final_alpha_cumprod = F32(1.0) if self.config.get("set_alpha_to_one", True) else self.alphas_cumprod[0]
        self.timesteps = self._timesteps()

    def _timesteps(self) -> np.ndarray:
        n, steps = self.num_train_timesteps, self.num_inference_steps
        spacing = self.config.get("timestep_spacing", "leading")
        if spacing == "linspace":
            ts = np.linspace(0, n - 1, steps).round()[::-1].copy().astype(np.int64)
        elif spacing == "leading":
            ratio = n // steps
            ts = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.int64)
            ts += int(self.config.get("steps_offset", 0))
        elif spacing == "trailing":
            ts = np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1
        else:
            raise ModelError(f"DDIM timestep_spacing '{spacing}' is not supported")
        return ts

    def step(self, model_output: np.ndarray, timestep: int, sample: np.ndarray) -> np.ndarray:
        """x_t -> x_{t-1} (diffusers DDIMScheduler.step with eta=0)."""
        prev_t = int(timestep) - self.num_train_timesteps // self.num_inference_steps
        a_t = self.alphas_cumprod[int(timestep)]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        b_t = F32(1) - a_t
        model_output = model_output.astype(F32, copy=False)
        sample = sample.astype(F32, copy=False)
        if self.prediction_type == "epsilon":
            x0 = (sample - b_t ** F32(0.5) * model_output) / a_t ** F32(0.5)
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (sample - a_t ** F32(0.5) * x0) / b_t ** F32(0.5)
        else:  # v_prediction
            x0 = a_t ** F32(0.5) * sample - b_t ** F32(0.5) * model_output
            eps = a_t ** F32(0.5) * model_output + b_t ** F32(0.5) * sample
        if self.clip_sample:
            x0 = np.clip(x0, -self.clip_sample_range, self.clip_sample_range)
        direction = (F32(1) - a_prev - F32(0)) ** F32(0.5) * eps
        return (a_prev ** F32(0.5) * x0 + direction).astype(F32)
