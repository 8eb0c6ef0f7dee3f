"""The controller refuses graphs that differ from its manifest and normalizers that blow actions up.

Before these checks, zeroed manifest hashes and 2000 flipped weight bits ran silently (actions moved
by 1.6), and a normalizer scale of 1e-6 produced actions of +-2.5e6 with exit code 0.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from runtime.controller import Controller
from runtime.controller.integrity import action_range, check_normalizer_against_limits
from runtime.controller.manifest import MANIFEST_NAME, Manifest
from runtime.errors import ModelError


@pytest.fixture()
def model_copy(tiny_export, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(tiny_export["dir"], dst)
    return dst


def _edit_manifest(model_dir, edit) -> None:
    path = model_dir / MANIFEST_NAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_intact_copy_loads_and_predicts(model_copy):
    controller = Controller.from_dir(model_copy)
    action = controller.predict(_obs(controller), seed=0)
    assert action.shape == controller.action_shape and np.isfinite(action).all()


def test_flipped_weight_bits_are_refused(model_copy):
    manifest = Manifest.load(model_copy)
    graph = model_copy / manifest.graph("denoiser").file
    raw = bytearray(graph.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(raw) // 2, len(raw), size=2000):  # the weights sit after the graph header
        raw[pos] ^= 1 << int(rng.integers(0, 8))
    graph.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match=r"denoiser.*sha256 .* does not match the manifest"):
        Controller.from_dir(model_copy)


def test_zeroed_manifest_hash_is_refused(model_copy):
    _edit_manifest(model_copy, lambda d: d["graphs"]["encoder"].update(sha256="0" * 64))
    with pytest.raises(ModelError, match="encoder.*does not match the manifest"):
        Controller.from_dir(model_copy)


def test_missing_graph_file_is_named(model_copy):
    manifest = Manifest.load(model_copy)
    (model_copy / manifest.graph("encoder").file).unlink()
    with pytest.raises(ModelError, match="missing"):
        Controller.from_dir(model_copy)


@pytest.mark.parametrize("scale, message", [
    (1e-6, r"action dim 0 to \[.*beyond the sanity cap"),
    (0.0, "scale is 0"),
    (float("nan"), "NaN/Inf"),
])
def test_absurd_normalizer_is_refused(model_copy, scale, message):
    def edit(d):
        d["normalizer"]["scale"][0] = scale if np.isfinite(scale) else "NaN"
    _edit_manifest(model_copy, edit)
    if not np.isfinite(scale):  # json cannot carry NaN as a string number: write the token itself
        path = model_copy / MANIFEST_NAME
        path.write_text(path.read_text().replace('"NaN"', "NaN"))
    with pytest.raises(ModelError, match=message):
        Controller.from_dir(model_copy)


def test_normalizer_against_joint_limits(tiny_export):
    manifest = Manifest.load(tiny_export["dir"])
    lo, hi = action_range(manifest)
    # The exported random normalizer was fitted on joint data: it fits a range one width wider.
    check_normalizer_against_limits(manifest, lo, hi)
    # A robot whose joints span a hundredth of what the model commands is not this model's robot.
    centre = (lo + hi) / 2
    narrow = (hi - lo) / 200
    with pytest.raises(ModelError, match="far outside the joint range"):
        check_normalizer_against_limits(manifest, centre - narrow, centre + narrow)
    with pytest.raises(ModelError, match="action dims but the robot config has"):
        check_normalizer_against_limits(manifest, lo[:5], hi[:5])


def _obs(controller):
    rng = np.random.default_rng(1)
    return {s.name: rng.random(s.shape, dtype=np.float32) for s in controller.obs_specs}
