"""`dexgrasp export tracker`: checkpoints in, an export directory (graphs + manifest.json) out."""

from __future__ import annotations

import json
import logging
import pathlib
from dataclasses import dataclass

from runtime.errors import ConfigError

log = logging.getLogger(__name__)

OBJECT_MODES = {
    # upstream's inference.py: objects = np.unique(mask) with 0 removed, i.e. [1]: the target only
    "target": ((1,), 1),
    # not upstream: the background region tracked as object 0 beside the target (twice the work)
    "target-and-background": ((0, 1), 1),
}


@dataclass
class TrackerExportRequest:
    output: pathlib.Path
    cutie_checkpoint: pathlib.Path | None = None
    cutie_config: str = "base"
    sam_checkpoint: pathlib.Path | None = None
    sam_type: str = "vit_h"
    random_init: bool = False  # random weights (tests/demos); saves the checkpoints it used
    with_sam: bool = False  # with random_init: also a random SAM
    seed: int = 0
    height: int = 480
    width: int = 640
    objects: str = "target"
    precision: str = "fp32"
    tensorrt: bool = False


def export_tracker(req: TrackerExportRequest) -> pathlib.Path:
    """Export Cutie (and SAM if given) to `req.output`; returns the manifest path."""
    import torch
    from tqdm import tqdm

    from export.tracker import cutie_model, onnx_export, random_weights, sam_model
    from runtime.tracking.learned.manifest import SamSettings

    if req.precision not in ("fp32", "fp16"):
        raise ConfigError(f"precision must be fp32 or fp16, got {req.precision!r}")
    if req.objects not in OBJECT_MODES:
        raise ConfigError(f"objects must be one of {', '.join(OBJECT_MODES)}, got {req.objects!r}")
    if req.cutie_checkpoint is None and not req.random_init:
        raise ConfigError("give --cutie-checkpoint PTH (e.g. cutie-base-mega.pth) or --random-init")
    output = pathlib.Path(req.output)
    output.mkdir(parents=True, exist_ok=True)
    source: dict = {"cutie_config": req.cutie_config}
    cutie_ckpt = req.cutie_checkpoint
    sam_ckpt = req.sam_checkpoint
    if req.random_init:
        if cutie_ckpt is None:
            cutie_ckpt = output / f"cutie_{req.cutie_config}_random_seed{req.seed}.pth"
            torch.save(random_weights.random_cutie_state(req.cutie_config, req.seed), cutie_ckpt)
            source["random_init_seed"] = req.seed
        if req.with_sam and sam_ckpt is None:
            sam_ckpt = output / f"sam_{req.sam_type}_random_seed{req.seed}.pth"
            torch.save(sam_model.random_sam_state(req.sam_type, req.seed), sam_ckpt)
    object_ids, target_id = OBJECT_MODES[req.objects]
    steps = 3 + (2 if sam_ckpt else 0)
    with tqdm(total=steps, desc="export tracker", unit="graph") as bar:
        net = cutie_model.build_cutie(req.cutie_config, checkpoint=cutie_ckpt)
        settings, graphs = onnx_export.export_cutie(net, output, req.height, req.width, object_ids, target_id,
                                                    progress=bar)
        source["cutie_checkpoint"] = str(cutie_ckpt)
        sam_settings = None
        if sam_ckpt is not None:
            sam = sam_model.build_sam(req.sam_type, checkpoint=sam_ckpt)
            graphs.update(onnx_export.export_sam(sam, output, req.height, req.width, progress=bar))
            sam_settings = SamSettings(model_type=req.sam_type, image_size=int(sam.image_encoder.img_size),
                                       pixel_mean=[float(x) for x in sam.pixel_mean.flatten()],
                                       pixel_std=[float(x) for x in sam.pixel_std.flatten()],
                                       mask_threshold=float(sam.mask_threshold))
            source["sam_checkpoint"] = str(sam_ckpt)
    source["packages"] = _package_versions()
    path = onnx_export.write_manifest(output, req.precision, settings, graphs, sam_settings, source)
    if req.tensorrt:
        from export.tracker.tensorrt_build import build_engines

        build_engines(output, req.precision)
    log.info("wrote %s", path)
    return path


def _package_versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "onnx", "onnxruntime", "rf-cutie", "segment-anything"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def summary(manifest_path: pathlib.Path) -> str:
    d = json.loads(pathlib.Path(manifest_path).read_text())
    lines = [f"exported tracker -> {pathlib.Path(manifest_path).parent}"]
    for name, g in d["graphs"].items():
        size_mb = (pathlib.Path(manifest_path).parent / g["file"]).stat().st_size / 1e6
        lines.append(f"  {name:20s} {g['file']:28s} {size_mb:8.1f} MB")
    c = d["cutie"]
    lines.append(f"  cutie {c['model_config']} at {c['width']}x{c['height']}, objects {c['object_ids']}, "
                 f"mem every {c['mem_every']}, {c['max_mem_frames']} memory frames, top-k {c['top_k']}")
    if d.get("sam"):
        lines.append(f"  sam {d['sam']['model_type']} (input {d['sam']['image_size']})")
    return "\n".join(lines)
