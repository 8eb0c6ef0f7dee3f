"""`dexgrasp engine build|verify` and `dexgrasp infer --backend openvino`: JSON line, exit codes,
the manifest record, the refusal of an unverified bf16 model, one-line errors."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from runtime.cli.main import main
from runtime.controller.manifest import Manifest
from runtime.controller.verify import synthetic_obs
from tests.runtime.bf16 import needs_bf16

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")


@pytest.fixture
def model(tiny_model_copy):
    return tiny_model_copy


@pytest.fixture(scope="session")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir


def _json_line(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, out
    return json.loads(lines[0])


@needs_bf16
def test_verify_records_a_pass_and_infer_then_runs(model, tmp_path, capsys):
    obs = synthetic_obs(Manifest.load(model), 1)[0]
    np.savez(tmp_path / "obs.npz", **obs)
    infer = ["infer", "--model", str(model), "--obs", str(tmp_path / "obs.npz"), "--output", str(tmp_path / "a.npz"),
             "--backend", "openvino", "--precision", "bf16", "--seed", "0", "--threads", "1"]
    assert main(infer) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no passing accuracy verification" in err and "engine verify" in err

    rc = main(["engine", "verify", "--model", str(model), "--backend", "openvino", "--precision", "bf16",
               "--threads", "1", "--count", "1"])
    result = _json_line(capsys.readouterr().out)
    assert rc == 0 and result["passed"] and result["max_error_of_range"] <= result["gate"] == 1e-2
    assert {"cosine", "graphs", "max_abs_error", "action_range"} <= set(result)
    assert set(result["graphs"]) == {"encoder", "denoiser"}
    manifest = Manifest.load(model)
    (rec,) = manifest.verifications
    assert rec["backend"] == "openvino" and rec["precision"] == "bf16" and rec["gate"] == 1e-2
    assert rec["graph_sha256"] == {k: manifest.graph(k).sha256 for k in ("encoder", "denoiser")}
    assert rec["backend_version"] and rec["cpu"] and rec["timestamp"]

    assert main(infer) == 0
    assert np.load(tmp_path / "a.npz")["action"].shape == (1, 64, 13)


@needs_bf16
def test_verify_above_gate_exits_1_and_records_nothing(model, capsys):
    rc = main(["engine", "verify", "--model", str(model), "--backend", "openvino", "--precision", "bf16",
               "--threads", "1", "--count", "1", "--max-error", "1e-9"])
    result = _json_line(capsys.readouterr().out)
    assert rc == 1 and not result["passed"] and result["max_error_of_range"] > 1e-9
    assert Manifest.load(model).verifications == []


def test_verify_fp32_on_given_obs(model, tmp_path, capsys):
    np.savez(tmp_path / "obs.npz", **synthetic_obs(Manifest.load(model), 1, seed=3)[0])
    rc = main(["engine", "verify", "--model", str(model), "--backend", "openvino", "--obs", str(tmp_path / "obs.npz"),
               "--threads", "1", "--no-record"])
    result = _json_line(capsys.readouterr().out)
    assert rc == 0 and result["max_error_of_range"] < 1e-4 and result["source"].endswith("obs.npz")
    assert Manifest.load(model).verifications == []


def test_build_openvino_fills_the_cache(model, tmp_path, capsys):
    args = ["engine", "build", "--model", str(model), "--backend", "openvino", "--threads", "1", "--no-progress"]
    assert main(args) == 0
    assert "compiled" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "openvino").glob("*/*.blob"))) == 2
    assert main(args) == 0
    assert capsys.readouterr().out.count("cached already") == 2


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_build_tensorrt_without_tensorrt_is_one_line(model, capsys):
    assert main(["engine", "build", "--model", str(model), "--backend", "tensorrt", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tensorrt" in err and "[gpu]" in err


def test_bad_precision_is_one_line(model, capsys):
    assert main(["engine", "build", "--model", str(model), "--backend", "openvino", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not 'fp16'" in err
