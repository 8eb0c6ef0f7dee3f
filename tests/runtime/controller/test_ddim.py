"""The numpy DDIM sampler equals diffusers' DDIMScheduler step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from export.model.arch import UPSTREAM_SCHEDULER
from runtime.controller.ddim import DDIMSampler
from runtime.errors import ModelError

CONFIGS = [
    (UPSTREAM_SCHEDULER, 16),
    (dict(UPSTREAM_SCHEDULER), 50),
    (dict(UPSTREAM_SCHEDULER, clip_sample=False, set_alpha_to_one=False, steps_offset=1), 10),
    (dict(UPSTREAM_SCHEDULER, num_train_timesteps=100, beta_schedule="linear"), 8),
    (dict(UPSTREAM_SCHEDULER, num_train_timesteps=1000, beta_schedule="scaled_linear",
          beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"), 20),
    (dict(UPSTREAM_SCHEDULER, timestep_spacing="linspace", prediction_type="sample"), 7),
    (dict(UPSTREAM_SCHEDULER, prediction_type="v_prediction", clip_sample_range=0.5), 16),
]


@pytest.mark.parametrize("config,steps", CONFIGS)
def test_equal_to_diffusers_step_for_step(config, steps):
    reference = DDIMScheduler(**config)
    reference.set_timesteps(steps)
    sampler = DDIMSampler(config, steps)
    assert sampler.timesteps.tolist() == reference.timesteps.tolist()
    np.testing.assert_array_equal(sampler.alphas_cumprod, reference.alphas_cumprod.numpy())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 13)).astype(np.float32)
    x_ref = torch.from_numpy(x.copy())
    for t in reference.timesteps:
        model_output = (rng.standard_normal((1, 64, 13)) * 1.5).astype(np.float32)
        x_ref = reference.step(torch.from_numpy(model_output), t, x_ref).prev_sample
        x = sampler.step(model_output, int(t), x)
        assert x.dtype == np.float32
        # Within 2e-6 or 4 float32 ulps of the step's largest value (|x| reaches ~45 without clip_sample). Not
        # bit for bit: on some CPUs (measured on an AMD EPYC, torch 2.13) torch's float32 sqrt is 1 ulp
        # off the correctly rounded one for 4 of the 1000 alphas_cumprod, and the sampler uses IEEE sqrt.
        ref = x_ref.numpy()
        atol = max(2e-6, 4 * float(np.spacing(np.float32(np.abs(ref).max()))))
        np.testing.assert_allclose(x, ref, rtol=0, atol=atol, err_msg=f"t={int(t)}")


def test_upstream_schedule():
    assert DDIMSampler(UPSTREAM_SCHEDULER, 16).timesteps.tolist() == list(range(45, -1, -3))


def test_rejects_unsupported_config():
    with pytest.raises(ModelError, match="beta_schedule"):
        DDIMSampler(dict(UPSTREAM_SCHEDULER, beta_schedule="sigmoid"), 16)
    with pytest.raises(ModelError, match="num_inference_steps"):
        DDIMSampler(UPSTREAM_SCHEDULER, 51)
    with pytest.raises(ModelError, match="thresholding"):
        DDIMSampler(dict(UPSTREAM_SCHEDULER, thresholding=True), 16)
