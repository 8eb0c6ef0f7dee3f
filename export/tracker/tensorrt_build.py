"""Build TensorRT engines for every graph of a tracker export and record them in manifest.json.

Runs on the target (Jetson / NVIDIA GPU) where TensorRT is installed: engines are specific to the
GPU and TensorRT version. fp16 sets the builder's FP16 flag; the ONNX graphs stay fp32. Written
against the TensorRT 10 Python API; never run on the CPU-only machine this was written on.
"""

from __future__ import annotations

import json
import logging
import pathlib

from runtime.errors import ModelError, require

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 2 << 30


def build_engine(onnx_path: pathlib.Path, engine_path: pathlib.Path, precision: str = "fp32") -> None:
    trt = require("tensorrt", "gpu", "building TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(pathlib.Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; building %s anyway", engine_path.name)
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path}")
    pathlib.Path(engine_path).write_bytes(bytes(serialized))


def build_engines(export_dir: pathlib.Path, precision: str = "fp32") -> pathlib.Path:
    """Build `<graph>.<precision>.engine` for each graph in the manifest and record it there."""
    from tqdm import tqdm

    from runtime.tracking.learned.manifest import MANIFEST_NAME, load_manifest

    export_dir = pathlib.Path(export_dir)
    manifest = load_manifest(export_dir)
    for name, spec in tqdm(manifest.graphs.items(), desc="TensorRT", unit="engine"):
        engine_file = f"{name}.{precision}.engine"
        build_engine(export_dir / spec.file, export_dir / engine_file, precision)
        spec.engine = engine_file
    manifest.precision = precision
    path = manifest.save(export_dir)
    json.loads(path.read_text())  # written whole; fail loudly if not
    log.info("TensorRT engines recorded in %s", export_dir / MANIFEST_NAME)
    return path
