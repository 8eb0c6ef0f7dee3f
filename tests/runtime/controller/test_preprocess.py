"""process_obs equals upstream's torch process_obs (inference.py) and rejects bad frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime.controller.preprocess import process_obs
from runtime.errors import ObservationError


def upstream_process_obs(head_bgr, mask, wrist_bgr, state):
    """Upstream inference.py process_obs for T=1 (rgbm = BGR + mask channel), written in torch."""
    rgb = torch.from_numpy(head_bgr[None]).float().permute(0, 3, 1, 2)
    rgb = F.interpolate(rgb / 255.0, size=(518, 518), mode="bilinear", align_corners=False)
    m = torch.from_numpy(mask[None, ..., None]).float().permute(0, 3, 1, 2)
    m = (F.interpolate(m, size=(518, 518), mode="nearest") > 0.5).float()
    wrist = torch.from_numpy(wrist_bgr[None]).float().permute(0, 3, 1, 2)
    wrist = F.interpolate(wrist / 255.0, size=(518, 518), mode="bilinear", align_corners=False)
    return {
        "rgbm": torch.cat([rgb, m], dim=1).numpy()[None],
        "right_cam_img": wrist.numpy()[None],
        "right_state": state.astype(np.float32)[None, None],
    }


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (300, 200), (518, 518), (1000, 1000), (37, 900)])
def test_equal_to_upstream(size):
    rng = np.random.default_rng(sum(size))
    head = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    wrist = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    mask = ((rng.random(size) > 0.6) * rng.choice([1, 255])).astype(np.uint8)
    state = rng.standard_normal(13)
    ours = process_obs(head, mask, wrist, state)
    ref = upstream_process_obs(head, mask, wrist, state)
    for key in ref:
        assert ours[key].shape == ref[key].shape and ours[key].dtype == np.float32
        np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(ours["rgbm"][0, 0, 3], ref["rgbm"][0, 0, 3])


def test_rejects_bad_frames():
    img = np.zeros((48, 64, 3), np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    state = np.zeros(13)
    with pytest.raises(ObservationError, match="head image: expected dtype uint8"):
        process_obs(img.astype(np.float32), mask, img, state)
    with pytest.raises(ObservationError, match="wrist image: expected a HxWx3"):
        process_obs(img, mask, img[..., :2], state)
    with pytest.raises(ObservationError, match="mask: shape"):
        process_obs(img, mask[:10], img, state)
    with pytest.raises(ObservationError, match=r"state: expected 13 values \(the model's right_state width\)"):
        process_obs(img, mask, img, np.zeros(12), state_dim=13)
    with pytest.raises(ObservationError, match="state: expected one row of joint values"):
        process_obs(img, mask, img, np.zeros((2, 13)))
    with pytest.raises(ObservationError, match="state: must be finite"):
        process_obs(img, mask, img, np.full(13, np.nan))


@pytest.mark.parametrize("n", [12, 13])
def test_the_state_width_is_the_models_not_a_constant(n):
    """A 6 + 6 robot's model reads 12 values, upstream's 13: the count comes from the caller (the
    model's manifest), or from the state itself when none is given."""
    img, mask = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    state = np.linspace(-1.0, 1.0, n)
    for obs in (process_obs(img, mask, img, state, size=28, state_dim=n), process_obs(img, mask, img, state, size=28)):
        assert obs["right_state"].shape == (1, 1, n) and obs["right_state"].dtype == np.float32
        np.testing.assert_allclose(obs["right_state"][0, 0], state.astype(np.float32))
