"""Controller (ONNX Runtime, torch-free) vs the PyTorch reference, input validation, manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.controller import Controller
from runtime.controller.manifest import Manifest
from runtime.errors import ModelError, ObservationError


@pytest.fixture(scope="module")
def controller(tiny_export):
    return Controller.from_dir(tiny_export["dir"], threads=1)


def _np_obs(tiny_export):
    return {k: v.numpy() for k, v in tiny_export["obs"].items()}


def test_matches_reference(controller, tiny_export):
    action = controller.predict(_np_obs(tiny_export), noise=tiny_export["noise"].numpy())
    reference = tiny_export["policy"].predict_action(tiny_export["obs"], tiny_export["noise"]).numpy()[0]
    assert action.shape == (64, 13) and action.dtype == np.float32
    np.testing.assert_allclose(action, reference, rtol=0, atol=1e-4)
    assert set(controller.last_timing) == {"encoder_ms", "denoise_ms", "total_ms"}


def test_seed_is_deterministic(controller, tiny_export):
    obs = _np_obs(tiny_export)
    a = controller.predict(obs, seed=3)
    b = controller.predict(obs, seed=3)
    c = controller.predict(obs, seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda o: o.pop("rgbm"), "'rgbm' is missing"),
        (lambda o: o.update(rgbm=o["rgbm"][:, :, :3]), r"'rgbm' has shape \(1, 1, 3, 518, 518\)"),
        (lambda o: o.update(right_state=o["right_state"].astype(np.float64)), "'right_state' has dtype float64"),
        (lambda o: o.update(right_cam_img=np.full((1, 1, 3, 518, 518), np.nan, np.float32)), "'right_cam_img' contains"),
        (lambda o: o.update(right_state=[0.0] * 13), "'right_state' must be a numpy array"),
    ],
)
def test_rejects_bad_observations(controller, tiny_export, mutate, message):
    obs = _np_obs(tiny_export)
    mutate(obs)
    with pytest.raises(ObservationError, match=message):
        controller.predict(obs, seed=0)


def test_rejects_bad_noise(controller, tiny_export):
    with pytest.raises(ObservationError, match="noise has shape"):
        controller.predict(_np_obs(tiny_export), noise=np.zeros((1, 32, 13), np.float32))


def test_manifest_errors(tiny_export, tmp_path):
    with pytest.raises(ModelError, match="manifest.json not found"):
        Controller.from_dir(tmp_path)
    data = json.loads((tiny_export["dir"] / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(dict(data, schema_version=99)))
    with pytest.raises(ModelError, match="schema_version 99"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"graph file\(s\) \['encoder.onnx'\] of 'encoder' are missing"):
        Controller.from_dir(tmp_path)


def test_manifest_round_trip(tiny_export):
    manifest = Manifest.load(tiny_export["dir"])
    again = Manifest.from_dict(json.loads(manifest.to_json()))
    assert again == manifest
    assert [t.name for t in manifest.graph("encoder").outputs] == ["obs_k_0", "obs_vt_0", "obs_k_1", "obs_vt_1",
                                                                  "obs_tokens"]
    assert manifest.graph("encoder").outputs[0].shape == [1, 8, 2739, 4]
