"""CutieTracker per-graph precision on a tiny export: the runners it builds, and the verification gate
(refused without a recorded pass for this mapping of these graphs; `dexgrasp track --verify` records one)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cutie", reason="building the random-weight export needs rf-cutie (export extra)")

import runtime.tracking.cutie as cutie_mod  # noqa: E402
from runtime.cli.main import main  # noqa: E402
from runtime.errors import ModelError  # noqa: E402
from runtime.tracking.cutie import CutieTracker  # noqa: E402
from runtime.tracking.learned import precision as gp  # noqa: E402
from runtime.tracking.learned import verify as tv  # noqa: E402
from runtime.tracking.learned.manifest import load_manifest  # noqa: E402
from tests.runtime.bf16 import needs_bf16  # noqa: E402

RECIPE_KEY = gp.key({g: gp.BF16_RECIPE[g] for g in gp.CUTIE_GRAPHS})


class RecordingRunner:
    """Stands in for GraphRunner where a test is about which runners are built, not about inference."""

    built: list[tuple[str, str, str]] = []

    def __init__(self, directory, name, spec, backend="onnxruntime", threads=2, precision="fp32"):
        RecordingRunner.built.append((name, backend, precision))


@pytest.fixture
def recorded_runners(monkeypatch):
    """GraphRunner recorded instead of compiled; the CPU/openvino check passes (gate logic only)."""
    RecordingRunner.built = []
    monkeypatch.setattr(cutie_mod, "GraphRunner", RecordingRunner)
    monkeypatch.setattr(gp, "_check_backend_can", lambda backend, mapping: None)
    return RecordingRunner.built


def _passing_result(frames=31):
    return {"iou_min": 0.995, "iou_mean": 0.998, "frames": frames, "gate": tv.DEFAULT_GATE, "passed": True}


def test_reduced_precision_is_refused_without_a_recorded_verification(cutie_copy, recorded_runners):
    with pytest.raises(ModelError) as info:
        CutieTracker(cutie_copy, backend="openvino", precision="bf16")
    text = str(info.value)
    assert f"no passing accuracy verification for openvino {RECIPE_KEY}" in text and "\n" not in text
    assert "dexgrasp track --verify" in text and "--precision bf16" in text
    assert "tracker.options.allow_unverified" in text
    assert recorded_runners == []  # refused before any graph is compiled
    # fp32 needs no verification, on either CPU backend
    CutieTracker(cutie_copy, backend="openvino")
    CutieTracker(cutie_copy)
    assert all(p == "fp32" for _, _, p in recorded_runners)


def test_allow_unverified_builds_the_recipes_runners(cutie_copy, recorded_runners):
    tracker = CutieTracker(cutie_copy, backend="openvino", precision="bf16", allow_unverified=True)
    assert tracker.verification is None and tracker.precision == RECIPE_KEY
    assert sorted(recorded_runners) == sorted((g, "openvino", gp.BF16_RECIPE[g]) for g in gp.CUTIE_GRAPHS)


def test_a_recorded_pass_unlocks_exactly_that_mapping_of_these_graphs(cutie_copy, recorded_runners):
    tv.record(cutie_copy, "openvino", RECIPE_KEY, _passing_result(), "test")
    tracker = CutieTracker(cutie_copy, backend="openvino", precision="bf16")
    assert tracker.verification["precision"] == RECIPE_KEY and tracker.verification["iou_min"] == 0.995
    # the same mapping written out per graph is the same request
    explicit = {g: p for g, p in gp.BF16_RECIPE.items() if g in gp.CUTIE_GRAPHS}
    assert CutieTracker(cutie_copy, backend="openvino", precision=explicit).verification is not None
    # another mapping (every graph bf16) was not verified
    with pytest.raises(ModelError, match="no passing accuracy verification"):
        CutieTracker(cutie_copy, backend="openvino", precision=dict.fromkeys(gp.CUTIE_GRAPHS, "bf16"))
    # a record made on other graphs (re-exported model) no longer counts
    manifest = load_manifest(cutie_copy)
    manifest.verifications[-1]["graph_sha256"]["cutie_segment"] = "0" * 64
    manifest.save(cutie_copy)
    with pytest.raises(ModelError, match="of its current graphs"):
        CutieTracker(cutie_copy, backend="openvino", precision="bf16")


def test_explicit_mapping_builds_each_graph_in_its_precision(cutie_copy, recorded_runners):
    CutieTracker(cutie_copy, backend="openvino", precision={"cutie_segment": "bf16"}, allow_unverified=True)
    assert sorted(recorded_runners) == [("cutie_encode_image", "openvino", "fp32"),
                                        ("cutie_encode_mask", "openvino", "fp32"),
                                        ("cutie_segment", "openvino", "bf16")]


def _hint(value) -> str:
    """OpenVINO's element type as compiled ("<type: 'bfloat16'>", "bf16", ...) -> bf16 / fp32."""
    text = str(value).lower()
    return "bf16" if ("bfloat16" in text or "bf16" in text) else "fp32" if ("float32" in text or "f32" in text) else text


@needs_bf16
def test_openvino_compiles_each_graph_with_its_own_precision_and_tracks(cutie_copy):
    """The real backends: bf16 graphs compile with OpenVINO's bf16 hint, the others with f32."""
    mapping = {"cutie_encode_mask": "bf16", "cutie_segment": "bf16"}
    tracker = CutieTracker(cutie_copy, backend="openvino", precision=mapping, allow_unverified=True)
    hints = {name: _hint(r._backend.compiled.get_property("INFERENCE_PRECISION_HINT"))
             for name, r in tracker.runners.items()}
    assert hints == {"cutie_encode_image": "fp32", "cutie_encode_mask": "bf16", "cutie_segment": "bf16"}
    frames, masks = tv.synthetic_sequence(tracker.frame_hw, 7)
    got, _ = tv.run_sequence(tracker, frames, masks[0])
    assert all(m.shape == tracker.frame_hw for m in got) and got[-1].any()


@needs_bf16
def test_track_verify_records_a_pass_that_lets_the_recipe_start(cutie_copy, capsys):
    args = ["track", "--verify", "--model", str(cutie_copy), "--backend", "openvino", "--precision", "bf16",
            "--max-frames", "8", "--gate", "0.5"]
    assert main(args + ["--no-record"]) in (0, 1)
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["frames"] == 7 and first["precision"] == RECIPE_KEY and "recorded" not in first
    assert load_manifest(cutie_copy).verifications == []
    with pytest.raises(ModelError):
        CutieTracker(cutie_copy, backend="openvino", precision="bf16")
    rc = main(args)
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["iou_min"] == pytest.approx(first["iou_min"])  # deterministic on the same frames
    assert rc == (0 if result["passed"] else 1) and result["passed"] == (result["iou_min"] >= 0.5)
    if not result["passed"]:
        pytest.skip(f"the tiny random model's bf16 masks fell below even a 0.5 gate ({result['iou_min']:.3f})")
    (record,) = load_manifest(cutie_copy).verifications
    assert record["precision"] == RECIPE_KEY and record["gate"] == 0.5 and record["frames"] == 7
    assert CutieTracker(cutie_copy, backend="openvino", precision="bf16").verification == record


@pytest.mark.parametrize("args, message", [
    (["--backend", "openvino", "--precision", "bf16", "--frames", "synthetic:4"],
     "needs --output, --box or --init-mask (or --verify)"),
    (["--verify", "--backend", "onnxruntime"], "--verify compares against onnxruntime fp32"),
    (["--verify", "--backend", "openvino", "--precision", "cutie_segmnt=bf16"], "did you mean 'cutie_segment'"),
    (["--backend", "onnxruntime", "--precision", "bf16", "--frames", "synthetic:4", "--init-mask", "m.png",
      "--output", "o"], "bf16 runs on backend openvino"),
])
def test_track_cli_errors_are_one_line(small_cutie_export, capsys, args, message):
    assert main(["track", "--model", str(small_cutie_export), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_mask_iou_and_the_gate_use_the_worst_tracked_frame():
    a = np.zeros((4, 4), np.uint8)
    a[:2] = 1
    b = a.copy()
    b[0, 0] = 0
    assert tv.mask_iou(a, a) == 1.0 and tv.mask_iou(a, b) == pytest.approx(7 / 8)
    assert tv.mask_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    out = tv.compare_masks([a, a, a], [b, a, b], gate=0.9)  # the init frame (given mask) is not scored
    assert out["frames"] == 2 and out["iou_min"] == pytest.approx(7 / 8) and out["worst_frame"] == 2
    assert out["passed"] is False and out["iou_mean"] == pytest.approx((1 + 7 / 8) / 2)
    assert tv.compare_masks([a, a], [b, a], gate=0.9, include_first=True)["worst_frame"] == 0
    assert tv.box_of(a) == [0.0, 0.0, 4.0, 2.0]
