"""Build TensorRT engines for every graph of a tracker export and record them in manifest.json.

Reuses the controller's builder (export/tensorrt_build.py: one static optimisation profile per
graph, FP16 flag, timing cache). Runs on the target (Jetson / NVIDIA GPU) where TensorRT is
installed: engines are specific to the GPU and TensorRT version; the ONNX graphs stay fp32.
Never run on the CPU-only machine this was written on.
"""

from __future__ import annotations

import logging
import pathlib

log = logging.getLogger(__name__)


def build_engines(export_dir: pathlib.Path, precision: str = "fp32", progress: bool = True) -> pathlib.Path:
    """Build `<graph>.<precision>.engine` for each graph in the tracker manifest and record it there."""
    from export.tensorrt_build import build_engine
    from runtime.tracking.learned.manifest import load_manifest

    export_dir = pathlib.Path(export_dir)
    manifest = load_manifest(export_dir)
    cache = export_dir / "timing.cache"
    for name, spec in manifest.graphs.items():
        engine_file = f"{name}.{precision}.engine"
        log.info("building TensorRT engine %s", engine_file)
        build_engine(export_dir / spec.file, spec, export_dir / engine_file,
                     precision == "fp16", cache, progress)
        spec.engine = engine_file
    manifest.precision = precision
    return manifest.save(export_dir)
