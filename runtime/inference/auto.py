"""`policy.backend: auto`: the fastest backend/precision that passed the accuracy gate on this machine.

Order: openvino bf16 (when openvino is installed, the CPU has AMX-BF16 or AVX512-BF16, and the
model's manifest has a passing `dexgrasp engine verify` for it), else onnxruntime fp32 (exact).
For the sim's own cached random-weight model (`verify_missing=True`) a missing verification is
run once here (seconds for the small preset) and recorded, so the demo picks bf16 when it passes;
a user's model directory is never written to implicitly.
"""

from __future__ import annotations

import importlib.util
import logging
import pathlib
from dataclasses import dataclass

from runtime.controller.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass
class Choice:
    backend: str
    precision: str
    reason: str

    def describe(self) -> str:
        return f"{self.backend} {self.precision} ({self.reason})"


def choose(model_dir: str | pathlib.Path, threads: int | None = None, verify_missing: bool = False) -> Choice:
    """Pick backend + precision for `model_dir` (see the module docstring). Blocks for a
    verification when one is run (two fp32 + two bf16 inferences)."""
    from runtime.inference.openvino import bf16_support

    if importlib.util.find_spec("openvino") is None:
        return Choice("onnxruntime", "fp32", "openvino not installed")
    flag = bf16_support()
    if flag is None:
        return Choice("onnxruntime", "fp32", "CPU without AMX-BF16/AVX512-BF16")
    manifest = Manifest.load(model_dir)
    record = manifest.verification("openvino", "bf16")
    if record is None and verify_missing:
        record = _verify_now(model_dir, threads)
    if record is None:
        return Choice("onnxruntime", "fp32", "no passing openvino bf16 verification in the manifest")
    return Choice("openvino", "bf16", f"{flag}; verified error {record['max_error_of_range']:.1e} of range "
                                      f"<= gate {record['gate']:g}")


def _verify_now(model_dir, threads) -> dict | None:
    from runtime.controller.controller import Controller
    from runtime.controller.verify import compare, record, synthetic_obs

    log.warning("backend auto: verifying openvino bf16 on %s once (recorded in its manifest)", model_dir)
    manifest = Manifest.load(model_dir)
    reference = Controller.from_dir(model_dir, "onnxruntime", threads=threads)
    candidate = Controller.from_dir(model_dir, "openvino", "bf16", threads=threads, allow_unverified=True)
    try:
        result = compare(reference, candidate, synthetic_obs(manifest, 1))
    finally:
        reference.close()
        candidate.close()
    if not result["passed"]:
        log.warning("backend auto: openvino bf16 error %.2e of range is above the gate; using fp32",
                    result["max_error_of_range"])
        return None
    return record(model_dir, "openvino", "bf16", result, "synthetic seed 0 (backend auto)")
