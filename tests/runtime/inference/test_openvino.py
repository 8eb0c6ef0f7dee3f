"""OpenVINO backend: fp32 parity with ONNX Runtime, the bf16 gate, K/V bound once per inference,
the verified compiled-model cache, and the one-line errors (missing package, bad precision)."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import numpy as np
import pytest

from runtime.controller import Controller
from runtime.controller.manifest import Manifest
from runtime.controller.verify import compare, record, synthetic_obs
from runtime.errors import MissingExtraError, ModelError
from tests.runtime.bf16 import needs_bf16

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="openvino is not installed (pip install 'dexgraspvla-runtime[openvino]')")


@pytest.fixture
def model(tiny_model_copy):
    """A private copy (verifications write its manifest) and a private cache root."""
    return tiny_model_copy


@pytest.fixture(scope="session")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def obs(tiny_dir):
    return synthetic_obs(Manifest.load(tiny_dir), 1, seed=5)[0]


NOISE = np.random.default_rng(9).standard_normal((1, 64, 13)).astype(np.float32)


def test_fp32_matches_onnxruntime(model, obs):
    ref = Controller.from_dir(model, "onnxruntime", threads=1).predict(obs, noise=NOISE)
    ov = Controller.from_dir(model, "openvino", "fp32", threads=1)
    assert ov.encoder.config["INFERENCE_PRECISION_HINT"] == "f32"  # exact, never silently bf16
    out = ov.predict(obs, noise=NOISE)
    assert np.abs(out - ref).max() <= 1e-4 * (ref.max() - ref.min())


@needs_bf16
def test_bf16_recipe_within_gate_and_denoiser_fp32(model, obs):
    ref = Controller.from_dir(model, "onnxruntime", threads=1)
    cand = Controller.from_dir(model, "openvino", "bf16", threads=1, allow_unverified=True)
    assert (cand.encoder.precision, cand.denoiser.precision) == ("bf16", "fp32")
    result = compare(ref, cand, [obs])
    assert result["passed"] and result["max_error_of_range"] <= 1e-2
    assert result["max_error_of_range"] > 0  # bf16 really ran (the encoder K/V differ)
    assert result["graphs"]["encoder"]["kv_max_error_of_range"] > 1e-5
    assert result["graphs"]["denoiser"]["sample_max_error_of_range"] < 1e-4  # fp32 denoiser


class Spy:
    """Wraps a backend, recording the input names of each run()."""

    def __init__(self, inner, with_bind: bool = True) -> None:
        self.inner, self.calls, self.bound = inner, [], []
        if with_bind:
            self.bind_static = self._bind

    def _bind(self, inputs):
        self.bound.append(sorted(inputs))
        self.inner.bind_static(inputs)

    def run(self, inputs):
        self.calls.append(sorted(inputs))
        return self.inner.run(inputs)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_kv_bound_once_per_inference(model, obs, backend):
    ctl = Controller.from_dir(model, backend, threads=1)
    ctl.bind_kv = False
    per_step = ctl.predict(obs, noise=NOISE)
    ctl.bind_kv = True
    ctl.denoiser = spy = Spy(ctl.denoiser)
    bound = ctl.predict(obs, noise=NOISE)
    again = ctl.predict(obs, noise=NOISE)  # rebinding for the next inference gives the same chunk
    np.testing.assert_array_equal(bound, per_step)
    np.testing.assert_array_equal(again, per_step)
    assert spy.bound == [sorted(ctl.kv_names)] * 2  # bound once per inference
    assert spy.calls == [["sample", "timestep"]] * (2 * ctl.manifest.num_inference_steps)


def test_backend_without_bind_gets_kv_every_step(model, obs):
    ctl = Controller.from_dir(model, "onnxruntime", threads=1)
    ref = ctl.predict(obs, noise=NOISE)
    ctl.denoiser = spy = Spy(ctl.denoiser, with_bind=False)
    np.testing.assert_array_equal(ctl.predict(obs, noise=NOISE), ref)
    assert all(len(c) == 2 + len(ctl.kv_names) for c in spy.calls)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_unbound_input_is_a_clear_error(model, backend):
    from runtime.inference import open_backend

    spec = Manifest.load(model).graph("denoiser")
    b = open_backend(backend, model, spec, threads=1)
    with pytest.raises(ModelError, match="not given"):
        b.run({"sample": np.zeros((1, 64, 13), np.float32)})


def test_compiled_cache_reused_and_corrupt_cache_rebuilt(model, obs, tmp_path):
    from runtime.inference.openvino import OpenVinoBackend

    spec = Manifest.load(model).graph("encoder")
    cache = tmp_path / "ovcache"
    first = OpenVinoBackend(model / spec.file, spec, threads=1, cache_dir=cache)
    want = first.run(obs)
    assert not first.cache_hit and first.blob.is_file() and first.blob.stat().st_size > 1000
    second = OpenVinoBackend(model / spec.file, spec, threads=1, cache_dir=cache)
    assert second.cache_hit
    blob = second.blob
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle (weights: it would still import)
    blob.write_bytes(bytes(data))
    third = OpenVinoBackend(model / spec.file, spec, threads=1, cache_dir=cache)
    assert not third.cache_hit  # not trusted: rebuilt
    got = third.run(obs)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    blob.write_bytes(b"")  # truncated
    assert not OpenVinoBackend(model / spec.file, spec, threads=1, cache_dir=cache).cache_hit
    assert OpenVinoBackend(model / spec.file, spec, threads=1, cache_dir=cache).cache_hit  # rewritten whole


def test_other_precision_other_cache_entry(model, tmp_path):
    from runtime.inference.openvino import OpenVinoBackend

    spec = Manifest.load(model).graph("denoiser")
    a = OpenVinoBackend(model / spec.file, spec, threads=1, cache_dir=tmp_path / "c")
    b = OpenVinoBackend(model / spec.file, spec, threads=2, cache_dir=tmp_path / "c")
    assert a.blob != b.blob and not b.cache_hit


@needs_bf16
def test_unverified_bf16_refused_until_verified(model, obs):
    with pytest.raises(ModelError, match="no passing accuracy verification for openvino bf16.*engine verify"):
        Controller.from_dir(model, "openvino", "bf16", threads=1)
    Controller.from_dir(model, "openvino", "bf16", threads=1, allow_unverified=True).close()
    ref = Controller.from_dir(model, "onnxruntime", threads=1)
    cand = Controller.from_dir(model, "openvino", "bf16", threads=1, allow_unverified=True)
    record(model, "openvino", "bf16", compare(ref, cand, [obs]), "test")
    Controller.from_dir(model, "openvino", "bf16", threads=1).close()  # now it starts
    manifest = Manifest.load(model)
    manifest.verifications[0]["graph_sha256"]["encoder"] = "0" * 64  # a record for other graphs
    manifest.save(model)
    with pytest.raises(ModelError, match="no passing accuracy verification"):
        Controller.from_dir(model, "openvino", "bf16", threads=1)


def test_precision_errors(model, monkeypatch):
    with pytest.raises(ModelError, match="supports precision.*not 'fp16'"):
        Controller.from_dir(model, "openvino", "fp16", allow_unverified=True)
    with pytest.raises(ModelError, match="onnxruntime backend runs fp32 only"):
        Controller.from_dir(model, "onnxruntime", "bf16", allow_unverified=True)
    import runtime.inference.openvino as ovb

    monkeypatch.setattr(ovb, "bf16_support", lambda core=None: None)
    with pytest.raises(ModelError, match="bf16 needs a CPU with AMX-BF16 or AVX512-BF16.*fp32"):
        Controller.from_dir(model, "openvino", "bf16", allow_unverified=True)


def test_openvino_missing_names_the_extra(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingExtraError, match=r"dexgraspvla-runtime\[openvino\]"):
        Controller.from_dir(model, "openvino")


def test_auto_choice(model, monkeypatch):
    import runtime.inference.openvino as ovb
    from runtime.inference.auto import choose

    assert choose(model).backend == "onnxruntime"  # no verification recorded: exact fp32
    monkeypatch.setattr(ovb, "bf16_support", lambda core=None: "avx512_bf16")
    monkeypatch.setattr("runtime.inference.auto._verify_now", lambda d, t: {"max_error_of_range": 5e-3, "gate": 1e-2})
    c = choose(model, verify_missing=True)
    assert (c.backend, c.precision) == ("openvino", "bf16") and "avx512_bf16" in c.reason
    monkeypatch.setattr(ovb, "bf16_support", lambda core=None: None)
    assert choose(model, verify_missing=True).describe().startswith("onnxruntime fp32 (CPU without")


def test_auto_verifies_the_projects_own_cached_model_but_never_a_users(tiny_model_dir, tmp_path, monkeypatch):
    """The demo hands make_policy the cached sim model's path: auto verifies that one once (it used
    to treat any explicit path as a user's model and fell back to fp32). A user's model is left alone."""
    from runtime.config import config_from_dict
    from runtime.config.components import make_policy
    from runtime.config.models import cache_root
    from runtime.inference.auto import Choice

    calls = []

    def choose(model_dir, threads=None, verify_missing=False):
        calls.append(verify_missing)
        return Choice("onnxruntime", "fp32", "test")

    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("runtime.inference.auto.choose", choose)
    own = cache_root() / "small-seed0-test"
    shutil.copytree(tiny_model_dir, own)
    users = tmp_path / "users_model"
    shutil.copytree(tiny_model_dir, users)
    cfg = config_from_dict({"policy": {"backend": "auto"}})
    make_policy(cfg, model_dir=own).controller.close()
    make_policy(cfg, model_dir=users).controller.close()
    assert calls == [True, False]


def test_tracker_graph_runner_precision_needs_openvino(model):
    from runtime.tracking.learned.backend import GraphRunner

    spec = Manifest.load(model).graph("denoiser")
    with pytest.raises(ModelError, match="needs backend openvino"):
        GraphRunner(model, "denoiser", spec, "onnxruntime", 1, precision="bf16")
    runner = GraphRunner(model, "denoiser", spec, "openvino", 1)
    assert runner._backend.name == "openvino" and runner._backend.precision == "fp32"
