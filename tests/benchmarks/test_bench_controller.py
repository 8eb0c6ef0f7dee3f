"""benchmarks/controller.py and tracker.py helpers, without models: which backend x precision rows
are produced (measured or why not), per-precision floors, the error gate, ISA listing, mask IoU."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import controller as bench
from benchmarks import tracker as tbench
from benchmarks.common import backends
from benchmarks.common.machine import isa_extensions


class FakeController:
    def __init__(self, offset: float) -> None:
        self.offset, self.closed, self.last_timing = offset, False, {}

    def predict(self, obs, noise):
        self.last_timing = {"encoder_ms": 30.0, "denoise_ms": 10.0, "total_ms": 40.0 + self.offset}
        return np.linspace(-1, 1, 64 * 13, dtype=np.float32).reshape(64, 13) + self.offset

    def close(self):
        self.closed = True


def test_every_config_gets_a_row_measured_or_with_its_reason(monkeypatch):
    opened = {}

    def fake_open(model_dir, backend, precision, threads):
        if precision == "int8":
            return None, "ModelError: int8 refused"
        opened[(backend, precision)] = FakeController(0.0 if precision == "fp32" else 0.01)
        return opened[(backend, precision)], None

    monkeypatch.setattr(backends, "CONTROLLER_CONFIGS",
                        (("onnxruntime", "fp32"), ("openvino", "bf16"), ("openvino", "int8"), ("tensorrt", "fp16")))
    monkeypatch.setattr(backends, "unavailable_reason", lambda b, p: "no GPU here" if b == "tensorrt" else None)
    monkeypatch.setattr(backends, "open_controller", fake_open)
    monkeypatch.setattr(bench, "_rate_sample", lambda precision, threads: {"fp32": 100.0, "bf16": 400.0}.get(precision))
    rate_samples: dict[str, list[float]] = {}
    rows = bench._config_rows("model", {}, np.zeros((1, 64, 13), np.float32), 2, 3, rate_samples)
    by = {(r["backend"], r["precision"]): r for r in rows}
    assert [r["status"] for r in rows] == ["ok", "ok", "not measured", "not measured"]
    assert by[("tensorrt", "fp16")]["reason"] == "no GPU here"
    assert by[("openvino", "int8")]["reason"] == "ModelError: int8 refused"
    # one rate sample in the row's own precision next to each timed run
    assert rate_samples == {"fp32": [100.0] * 3, "bf16": [400.0] * 3}
    assert all(c.closed for c in opened.values())
    ref = np.linspace(-1, 1, 64 * 13, dtype=np.float32).reshape(64, 13)
    _, rel = bench._rel_error(by[("openvino", "bf16")]["action"], ref)
    assert rel == pytest.approx(0.005, rel=1e-3)  # 0.01 offset over a range of 2


def test_preset_floors_use_the_fastest_rate_seen_per_precision():
    start = {"fp32": 31.0, "bf16": 93.0, "fp16": None}  # measured while the CPU was busy
    floors = bench.preset_floors(start, {"fp32": [170.0, 160.0], "bf16": [600.0]})
    assert floors == {"fp32": 170.0, "bf16": 600.0, "fp16": None}
    assert bench.preset_floors(start, {}) == start


def test_floor_rates_pick_the_fastest_fp32_library_and_torch_bf16():
    rates = {"numpy_fp32": {"gflops_median": 90.0}, "onnxruntime_fp32": {"gflops_median": 110.0},
             "torch_fp32": {"not_measured": "x"}, "torch_bf16": {"gflops_median": 700.0}}
    assert bench.floor_rates(rates) == {"fp32": 110.0, "bf16": 700.0, "fp16": None}


def test_table_lists_not_measured_rows_and_both_eager_baselines():
    row = {"preset": "small", "eager_ms": 200.0, "eager_bf16_ms": 100.0,
           "backends": [{"backend": "onnxruntime", "precision": "fp32", "status": "ok", "encoder_ms": 30.0,
                         "denoise_ms": 10.0, "total_ms": 40.0, "rel_error": 1e-6, "speedup_vs_eager_fp32": 5.0,
                         "speedup_vs_eager_bf16": 2.5, "floor_ms": 20.0, "ratio_to_floor": 2.0, "passes_gate": True},
                        {"backend": "tensorrt", "precision": "fp16", "status": "not measured", "reason": "no GPU"}],
           "exported_nocache": {"encoder_ms": 30.0, "denoise_ms": 50.0, "total_ms": 80.0},
           "eager_fp32": {"encoder_ms": 50.0, "denoise_ms": 150.0, "total_ms": 200.0, "floor_ms": 100.0},
           "eager_bf16_autocast": {"encoder_ms": 30.0, "denoise_ms": 70.0, "total_ms": 100.0, "rel_error": 5e-2}}
    table = bench.table_rows([row])
    assert all(len(r) == len(bench.COLUMNS) for r in table)
    names = [r[1] for r in table]
    assert names == ["onnxruntime fp32", "tensorrt fp16", "onnxruntime fp32, no K/V cache", "PyTorch eager fp32",
                     "PyTorch eager bf16 autocast"]
    assert table[0][6:8] == ["5.00x", "2.50x"] and table[0][-1] == "passes gate"
    assert table[1][-1] == "not measured: no GPU"
    assert table[4][5] == "5.0e-02" and table[4][6] == "2.00x"


def test_open_controller_retries_without_unverified_and_reports_refusals(monkeypatch):
    from runtime.controller import Controller
    from runtime.errors import ModelError

    calls = []

    def from_dir(model_dir, **kw):
        calls.append(kw)
        if "allow_unverified" in kw:
            raise TypeError("unexpected keyword argument 'allow_unverified'")
        if kw.get("precision") == "int8":
            raise ModelError("openvino cannot do int8 here\nsecond line")
        return "controller"

    monkeypatch.setattr(Controller, "from_dir", staticmethod(from_dir))
    assert backends.open_controller("m", "openvino", "bf16", 2) == ("controller", None)
    assert calls[-1] == {"backend": "openvino", "precision": "bf16", "threads": 2}
    assert backends.open_controller("m", "openvino", "int8", 2) == (None, "ModelError: openvino cannot do int8 here")


def test_isa_extensions_from_cpuinfo():
    x86 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
    assert isa_extensions(x86) == ["sse4_2", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"]
    assert isa_extensions("Features\t: fp asimd asimdhp bf16 i8mm\n") == ["asimd", "asimdhp", "bf16", "i8mm"]
    assert isa_extensions("") == []


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert tbench.mask_iou(a, b) == 1.0
    a[:2], b[1:3] = True, True
    assert tbench.mask_iou(a, b) == pytest.approx(4 / 12)


def test_declared_speed_targets_give_verdicts_only_at_their_preset():
    small = {"preset": "small", "best_total_ms": 420.0, "best": {"backend": "openvino", "precision": "bf16"}}
    rows = {r["name"]: r for r in bench.declared_targets([small])}
    assert rows["small preset per chunk, fastest gated backend"]["pass"] is True
    assert all(r["pass"] is None for n, r in rows.items() if "paper" in n)
    paper = {"preset": "dexgraspvla", "best_speedup_vs_eager": 4.2, "best_speedup_vs_eager_bf16": 1.7,
             "best": {"backend": "openvino", "precision": "bf16", "rel_error": 8e-3}}
    rows = {r["name"]: r for r in bench.declared_targets([small, paper])}
    assert rows["fastest gated backend vs eager fp32 (paper sizes)"]["pass"] is False
    assert rows["fastest gated backend vs eager bf16 autocast (paper sizes)"]["pass"] is True
    assert "openvino bf16" in rows["fastest gated backend vs eager fp32 (paper sizes)"]["note"]


def test_tracker_targets_gate_speed_on_iou():
    def frame(ms):
        return {"p50": ms}

    results = {"cutie_config": "base", "frames": 40, "cutie_onnxruntime": {"per_frame_ms": frame(400.0)},
               "cutie_backends": [
                   {"backend": "openvino", "precision": "bf16", "status": "ok", "per_frame_ms": frame(100.0),
                    "iou_vs_fp32_min": 0.95},
                   {"backend": "openvino", "precision": "fp32", "status": "ok", "per_frame_ms": frame(180.0),
                    "iou_vs_fp32_min": 0.999}]}
    fps, iou = tbench.declared_targets(results)
    assert fps["measured"] == pytest.approx(1e3 / 180.0, abs=0.01) and fps["pass"] is True  # bf16 fails IoU
    assert "openvino fp32" in fps["note"]
    assert iou["measured"] == 0.95 and iou["pass"] is False
    quick = tbench.declared_targets({**results, "cutie_config": "small", "frames": 8})
    assert all(r["pass"] is None for r in quick) and "Cutie small" in quick[0]["note"]
