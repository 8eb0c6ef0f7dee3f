"""Write a tracker export directory: Cutie (and optionally SAM) graphs + manifest.json.

Graphs are traced with the TorchScript ONNX exporter at fixed shapes (the camera's resolution;
upstream runs Cutie at full 640x480), checked against the PyTorch modules on random inputs right
after export, and hashed into the manifest the runtime verifies on load.
"""

from __future__ import annotations

import logging
import pathlib
import warnings

import numpy as np

from export.tracker.cutie_graphs import area_resize_as_avg_pool, example_inputs, graph_specs
from runtime.errors import ConfigError, ModelError
from runtime.tracking.cutie import pad_amounts
from runtime.tracking.learned.manifest import CutieSettings, GraphSpec, TensorSpec, sha256_file

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_CHECK_TOL = 1e-3


def _export_graph(module, inputs: dict, outputs: list[str], path: pathlib.Path, seed: int) -> GraphSpec:
    import onnxruntime as ort
    import torch

    example = example_inputs(inputs, seed)
    with torch.no_grad(), area_resize_as_avg_pool(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=list(inputs), output_names=outputs,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
        reference = [t.numpy() for t in module(*example)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {k: v.numpy() for k, v in zip(inputs, example, strict=False)})
    for name, a, b in zip(outputs, got, reference, strict=False):
        err = float(np.abs(a - b).max())
        if not err <= EXPORT_CHECK_TOL * max(1.0, float(np.abs(b).max())):
            raise ModelError(f"exported {path.name} output '{name}' differs from PyTorch by {err:.3g}")
    return GraphSpec(
        file=path.name, sha256=sha256_file(path),
        inputs=[TensorSpec(k, list(v.shape), str(v.numpy().dtype)) for k, v in zip(inputs, example, strict=False)],
        outputs=[TensorSpec(n, list(r.shape), str(r.dtype)) for n, r in zip(outputs, reference, strict=False)],
    )


def export_cutie(net, output: pathlib.Path, height: int = 480, width: int = 640,
                 object_ids: tuple[int, ...] = (0, 1), target_id: int = 1, progress=None
                 ) -> tuple[CutieSettings, dict[str, GraphSpec]]:
    """Export the three Cutie graphs for frames of height x width; returns (settings, graph specs)."""
    cfg = net.cfg
    if height <= 0 or width <= 0:
        raise ConfigError(f"frame size must be positive, got {width}x{height}")
    if target_id not in object_ids:
        raise ConfigError(f"target id {target_id} must be one of the tracked object ids {list(object_ids)}")
    left, right, top, bottom = pad_amounts(height, width)
    padded_h, padded_w = height + top + bottom, width + left + right
    specs = graph_specs(net, padded_h, padded_w, len(object_ids), cfg.max_mem_frames, cfg.top_k)
    graphs = {}
    for i, (name, (module, inputs, outputs)) in enumerate(specs.items()):
        if progress is not None:
            progress.set_postfix_str(name)
        graphs[name] = _export_graph(module, inputs, outputs, output / f"{name}.onnx", seed=i)
        if progress is not None:
            progress.update(1)
    m = cfg.model
    settings = CutieSettings(
        model_config=str(cfg.get("tracker_model_config", "base")), height=height, width=width,
        object_ids=[int(x) for x in object_ids], target_id=int(target_id), mem_every=int(cfg.mem_every),
        max_mem_frames=int(cfg.max_mem_frames), top_k=int(cfg.top_k), stagger_updates=int(cfg.stagger_updates),
        key_dim=int(m.key_dim), value_dim=int(m.value_dim), sensory_dim=int(m.sensory_dim),
        embed_dim=int(m.embed_dim), num_queries=int(m.object_transformer.num_queries),
    )
    return settings, graphs


def write_manifest(output: pathlib.Path, precision: str, cutie_settings: CutieSettings,
                   graphs: dict[str, GraphSpec], sam_settings=None, source: dict | None = None) -> pathlib.Path:
    from runtime.tracking.learned.manifest import TrackerManifest

    manifest = TrackerManifest(precision=precision, cutie=cutie_settings, graphs=graphs, sam=sam_settings,
                               source=source or {})
    return manifest.save(output)


def export_sam(sam, output: pathlib.Path, height: int, width: int, progress=None) -> dict[str, GraphSpec]:
    """Export SAM's image encoder and box -> mask decoder for frames of height x width."""
    from export.tracker.sam_graphs import graph_specs as sam_graph_specs

    graphs = {}
    for i, (name, (module, inputs, outputs)) in enumerate(sam_graph_specs(sam, height, width).items()):
        if progress is not None:
            progress.set_postfix_str(name)
        graphs[name] = _export_graph(module, inputs, outputs, output / f"{name}.onnx", seed=10 + i)
        if progress is not None:
            progress.update(1)
    return graphs
