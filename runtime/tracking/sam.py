"""SamBoxSegmenter: the planner's box -> a mask, as upstream's SamPredictor.predict(box=...), torch-free.

Upstream: `predictor.set_image(rgb)`, `masks, scores, _ = predictor.predict(box=box,
multimask_output=True)`, keep `masks[argmax(scores)]`. Here the resize to the encoder's input is a
numpy re-implementation of PIL's bilinear resample (what ResizeLongestSide.apply_image runs, bit for
bit), the rest runs in the exported graphs. `segment` blocks for one encoder + one decoder run
(the ViT-H encoder is the expensive part: seconds on a CPU).
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field

import numpy as np

from runtime.errors import ModelError, ObservationError
from runtime.tracking.base import check_frame
from runtime.tracking.learned import precision as graph_precision
from runtime.tracking.learned.backend import GraphRunner
from runtime.tracking.learned.manifest import TrackerManifest, load_manifest
from runtime.tracking.learned.precision import SAM_IMAGE_ENCODER as IMAGE_ENCODER
from runtime.tracking.learned.precision import SAM_PROMPT_DECODER as PROMPT_DECODER

_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point precision for 8-bit images


def _pil_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter: (index, int weight) per tap."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), np.int64)
    weight = np.zeros((out_size, ksize), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ss = 1.0 / filterscale
        taps = np.array([max(0.0, 1.0 - abs((x + xmin - center + 0.5) * ss)) for x in range(xmax)])
        total = taps.sum()
        if total != 0:
            taps = taps / total
        fixed = np.where(taps < 0, np.trunc(-0.5 + taps * (1 << _PRECISION_BITS)),
                         np.trunc(0.5 + taps * (1 << _PRECISION_BITS))).astype(np.int64)
        index[xx, :xmax] = np.arange(xmin, xmin + xmax)
        weight[xx, :xmax] = fixed
    return index, weight


def _resample_axis(image: np.ndarray, axis: int, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    moved = np.moveaxis(image.astype(np.int64), axis, 0)  # (in, ...)
    acc = np.full((index.shape[0], *moved.shape[1:]), 1 << (_PRECISION_BITS - 1), np.int64)
    extra = (slice(None),) + (None,) * (moved.ndim - 1)
    for k in range(index.shape[1]):
        acc += moved[index[:, k]] * weight[:, k][extra]
    out = np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def pil_bilinear_resize(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resize HxWxC uint8 like PIL `Image.resize(size, BILINEAR)` (horizontal pass, then vertical).

    Bit-exact with Pillow when upscaling, which is SAM's case for every camera up to 1024 px on its
    long side (640x480 -> 1024x768). When shrinking, recent Pillow sometimes runs the vertical pass
    first; results then differ by at most 1 grey level on some pixels.
    """
    h, w = image.shape[:2]
    out = image
    if out_hw[1] != w:
        out = _resample_axis(out, 1, *_pil_bilinear_taps(w, out_hw[1]))
    if out_hw[0] != h:
        out = _resample_axis(out, 0, *_pil_bilinear_taps(h, out_hw[0]))
    return out


@dataclass
class SamResult:
    mask: np.ndarray  # uint8 {0,1} HxW, the highest-scoring of the 3 masks
    score: float  # its predicted IoU
    scores: np.ndarray  # all 3 predicted IoUs
    info: dict = field(default_factory=dict)


class SamBoxSegmenter:
    """Box [x1, y1, x2, y2] in camera pixels -> best SAM mask. Shapes come from the manifest.

    precision: per graph, as CutieTracker's (runtime/tracking/learned/precision.py); the "bf16"
    recipe keeps SAM fp32. CutieTracker applies the verification gate; this class does not.
    """

    def __init__(self, model_dir: str | pathlib.Path, backend: str = "onnxruntime", threads: int = 2,
                 manifest: TrackerManifest | None = None, precision: str | dict[str, str] = "fp32") -> None:
        self.model_dir = pathlib.Path(model_dir)
        self.manifest = manifest or load_manifest(self.model_dir)
        if self.manifest.sam is None:
            raise ModelError(f"{self.model_dir} has no SAM graphs: export with --sam-checkpoint to "
                             f"initialise from boxes, or initialise the tracker with a mask")
        self.settings = self.manifest.sam
        per_graph = graph_precision.resolve(precision, backend, self.manifest.graphs)
        self.runners = {name: GraphRunner(self.model_dir, name, self.manifest.graph(name), backend, threads,
                                          per_graph[name])
                        for name in (IMAGE_ENCODER, PROMPT_DECODER)}
        self.input_hw = self.runners[IMAGE_ENCODER].spec.input_shape("image")[2:]
        self.frame_hw = tuple(self.runners[PROMPT_DECODER].spec.outputs[0].shape[2:])

    def check_box(self, box_xyxy) -> np.ndarray:
        box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
        h, w = self.frame_hw
        if box.shape != (4,) or not np.isfinite(box).all():
            raise ObservationError(f"box must be 4 finite numbers [x1, y1, x2, y2], got {box_xyxy!r}")
        x1, y1, x2, y2 = box
        if not (x2 > x1 and y2 > y1):
            raise ObservationError(f"box {box.tolist()} is empty or reversed (need x2 > x1 and y2 > y1)")
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            raise ObservationError(f"box {box.tolist()} lies outside the {w}x{h} image")
        return box

    def encode(self, image_bgr: np.ndarray) -> np.ndarray:
        """SamPredictor.set_image(rgb): resize (PIL bilinear) -> encoder graph -> image embeddings."""
        check_frame(image_bgr, self.frame_hw)
        rgb = np.ascontiguousarray(image_bgr[..., ::-1])
        resized = pil_bilinear_resize(rgb, self.input_hw)
        image = resized.transpose(2, 0, 1)[None].astype(np.float32)
        return self.runners[IMAGE_ENCODER].run({"image": image})["image_embeddings"]

    def predict(self, embeddings: np.ndarray, box_xyxy) -> SamResult:
        """SamPredictor.predict(box=box, multimask_output=True), keeping the best-scoring mask."""
        box = self.check_box(box_xyxy)
        h, w = self.frame_hw
        ih, iw = self.input_hw
        scaled = (box.reshape(2, 2) * np.array([iw / w, ih / h])).reshape(1, 4).astype(np.float32)
        out = self.runners[PROMPT_DECODER].run({"image_embeddings": embeddings, "box": scaled})
        scores = out["iou_predictions"][0]
        best = int(np.argmax(scores))
        mask = (out["masks"][0, best] > self.settings.mask_threshold).astype(np.uint8)
        return SamResult(mask=mask, score=float(scores[best]), scores=scores.copy(),
                         info={"best": best, "scores": scores.tolist(), "area_px": int(mask.sum())})

    def segment(self, image_bgr: np.ndarray, box_xyxy) -> SamResult:
        box = self.check_box(box_xyxy)
        return self.predict(self.encode(image_bgr), box)

    def latency_summary_ms(self) -> dict:
        return {name: r.stats.summary_ms() for name, r in self.runners.items()}
