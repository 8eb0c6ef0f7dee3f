"""CutieTracker: upstream's learned mask tracker (SAM box -> mask, Cutie per frame), torch-free.

Runs the graphs exported by `dexgrasp export tracker` and reproduces InferenceCore.step with
upstream's settings (full resolution, a memory frame every 5 frames, 5 memory frames, top-k 30,
sensory updates on every frame between memory frames). Memory lives in preallocated numpy buffers
(CutieMemory). Every method blocks the calling thread (the tracker thread) for the graphs it runs
(no timeout: each graph has a bounded cost; benchmarks/tracker.py measures it per graph).
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from runtime.errors import ModelError, ObservationError
from runtime.tracking.base import TrackResult, check_frame
from runtime.tracking.learned import precision as graph_precision
from runtime.tracking.learned.backend import GraphRunner
from runtime.tracking.learned.cutie_memory import CutieMemory
from runtime.tracking.learned.manifest import TrackerManifest, load_manifest
from runtime.tracking.learned.precision import ENCODE_IMAGE, ENCODE_MASK, SEGMENT

__all__ = ["CutieTracker", "ENCODE_IMAGE", "ENCODE_MASK", "SEGMENT", "pad_amounts", "soft_one_hot"]


def pad_amounts(height: int, width: int, multiple: int = 16) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding to a multiple of 16, split like Cutie's pad_divide_by."""
    new_h = height + multiple - height % multiple if height % multiple else height
    new_w = width + multiple - width % multiple if width % multiple else width
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return left, new_w - width - left, top, new_h - height - top


def soft_one_hot(masks: np.ndarray) -> np.ndarray:
    """Cutie's `softmax(aggregate(mask))` for an input mask: (N,H,W) {0,1} -> (N+1,H,W) probabilities."""
    masks = masks.astype(np.float32)
    bg = np.prod(1.0 - masks, axis=0, keepdims=True)
    p = np.clip(np.concatenate([bg, masks], axis=0), 1e-7, 1 - 1e-7).astype(np.float32)
    logits = np.log(p / (1 - p))
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


class CutieTracker:
    """Tracker (runtime.tracking.base) over an exported Cutie (+ optional SAM for box initialisation).

    model_dir:    directory written by `dexgrasp export tracker` (manifest.json + graphs).
    backend:      "onnxruntime" (CPU), "openvino" (CPU; precision "bf16" on AMX/AVX512-BF16 CPUs)
                  or "tensorrt" (engines built on the target).
    precision:    per graph (runtime/tracking/learned/precision.py): "fp32" (default, exact), "bf16"
                  (openvino: the measured recipe, graphs that break the masks stay fp32) or an
                  explicit {graph: precision} mapping. Anything below fp32 needs a passing
                  `dexgrasp track --verify` recorded in manifest.json, unless `allow_unverified`.
    min_area_px:  a mask smaller than this counts as lost (the object left the frame or vanished).
    """

    def __init__(self, model_dir: str | pathlib.Path, backend: str = "onnxruntime", threads: int = 2,
                 min_area_px: int = 1, manifest: TrackerManifest | None = None,
                 precision: str | dict[str, str] = "fp32", allow_unverified: bool = False) -> None:
        self.model_dir = pathlib.Path(model_dir)
        self.backend, self.threads = backend, threads
        self.manifest = manifest or load_manifest(self.model_dir)
        # {graph: precision} of every graph in the export; one-line ConfigError for a bad request
        self.graph_precision = graph_precision.resolve(precision, backend, self.manifest.graphs)
        self.precision = graph_precision.key(self.graph_precision)  # "fp32" or the reduced graphs
        requested = precision if isinstance(precision, str) else self.precision  # for the hint
        self.verification = self._require_verified(requested, allow_unverified)
        c = self.manifest.cutie
        self.settings = c
        self.frame_hw = (c.height, c.width)
        self.pad = pad_amounts(c.height, c.width)
        padded_hw = (c.height + self.pad[2] + self.pad[3], c.width + self.pad[0] + self.pad[1])
        self.padded_hw = padded_hw
        if c.target_id not in c.object_ids:
            raise ModelError(f"manifest target_id {c.target_id} is not among object_ids {c.object_ids}")
        self.target_channel = c.object_ids.index(c.target_id) + 1  # channel 0 is the background
        self.runners = {name: GraphRunner(self.model_dir, name, self.manifest.graph(name), backend, threads,
                                          self.graph_precision[name])
                        for name in (ENCODE_IMAGE, ENCODE_MASK, SEGMENT)}
        self.memory = CutieMemory(len(c.object_ids), c.key_dim, c.value_dim, c.sensory_dim, c.embed_dim,
                                  c.num_queries, c.max_mem_frames,
                                  (padded_hw[0] // 16, padded_hw[1] // 16), padded_hw)
        if c.stagger_updates >= c.mem_every:
            self.stagger_ti = set(range(1, c.mem_every + 1))
        else:
            self.stagger_ti = set(np.round(np.linspace(1, c.mem_every, c.stagger_updates)).astype(int).tolist())
        self.min_area_px = int(min_area_px)
        self._sam = None
        self._image = np.zeros((1, 3, *padded_hw), np.float32)
        self._state = "uninitialised"  # -> tracking | no_target
        self.curr_ti = -1
        self.last_mem_ti = 0

    # -- public interface ----------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def sam(self):
        """The SAM box segmenter of this export (loaded on first use), or ModelError if not exported."""
        if self._sam is None:
            from runtime.tracking.sam import SamBoxSegmenter

            self._sam = SamBoxSegmenter(self.model_dir, manifest=self.manifest, backend=self.backend,
                                        threads=self.threads, precision=self.graph_precision)
        return self._sam

    def init(self, image_bgr: np.ndarray, box_xyxy: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> TrackResult:
        """(Re-)initialise on a frame from a pixel box (through SAM) or a {0,1} mask; clears all memory.

        An empty mask (or a SAM result with no pixel) leaves the tracker in state "no_target":
        `track` then returns lost results until the next `init`.
        """
        self._check(image_bgr)
        info: dict = {}
        if (box_xyxy is None) == (mask is None):
            raise ValueError("init needs exactly one of box_xyxy or mask")
        if box_xyxy is not None:
            sam_result = self.sam.segment(image_bgr, box_xyxy)
            mask = sam_result.mask
            info["sam"] = sam_result.info
        mask = self._check_mask(mask)
        self.memory.clear()
        self.curr_ti, self.last_mem_ti = 0, 0
        if not mask.any():
            self._state = "no_target"
            return self._lost_result("empty initial mask", info)
        self._state = "tracking"
        t0 = time.perf_counter()
        image = self._preprocess(image_bgr)
        feats = self.runners[ENCODE_IMAGE].run({"image": image})
        # pad the id mask first (Cutie's pad_divide_by): padding is id 0, i.e. upstream's object 0
        padded = self._pad(mask)
        prob = soft_one_hot(np.stack([(padded == obj) for obj in self.settings.object_ids]))
        self.memory.last_mask[0] = prob[1:]
        self._add_memory(image, feats)
        info.update(self._timings(t0, ["encode_image", "encode_mask"]))
        return self._result(prob, info)

    def track(self, image_bgr: np.ndarray) -> TrackResult:
        """Segment the next frame from memory (and memorise it every `mem_every` frames)."""
        if self._state == "uninitialised":
            raise RuntimeError("CutieTracker.track called before init")
        self._check(image_bgr)
        if self._state == "no_target":
            return self._lost_result("no target (initialised with an empty mask)", {})
        t0 = time.perf_counter()
        c = self.settings
        self.curr_ti += 1
        since = self.curr_ti - self.last_mem_ti
        is_mem_frame = since >= c.mem_every
        update_sensory = since in self.stagger_ti
        image = self._preprocess(image_bgr)
        feats = self.runners[ENCODE_IMAGE].run({"image": image})
        m = self.memory
        out = self.runners[SEGMENT].run({
            "key": feats["key"], "selection": feats["selection"], "pix_feat": feats["pix_feat"],
            "f8": feats["f8"], "f4": feats["f4"], "sensory": m.sensory, "last_mask": m.last_mask,
            "mem_key": m.key, "mem_shrinkage": m.shrinkage, "mem_valid": m.valid, "mem_value": m.value,
            "obj_memory": m.obj_memory,
        })
        prob = out["prob_with_bg"][0]
        if update_sensory:
            m.sensory[:] = out["sensory_out"]
        m.last_mask[0] = prob[1:]
        graphs = ["encode_image", "segment"]
        if is_mem_frame:
            self._add_memory(image, feats)
            graphs.append("encode_mask")
        info = {"ti": self.curr_ti, "memory_frame": is_mem_frame, **self._timings(t0, graphs)}
        return self._result(prob, info)

    def reset(self) -> None:
        self.memory.clear()
        self._state = "uninitialised"
        self.curr_ti, self.last_mem_ti = -1, 0

    def latency_summary_ms(self) -> dict:
        """Per-graph latency {graph: {count, p50, p99, max, mean}} in milliseconds since construction."""
        out = {name: r.stats.summary_ms() for name, r in self.runners.items()}
        if self._sam is not None:
            out.update(self._sam.latency_summary_ms())
        return out

    # -- internals -----------------------------------------------------------------------------
    def _require_verified(self, requested: str, allow_unverified: bool) -> dict | None:
        """The controller's gate, on the tracker's manifest: a reduced precision starts only with a
        recorded verification of these graphs (or `allow_unverified`); fp32 needs none."""
        if not graph_precision.reduced(self.graph_precision):
            return None
        from runtime.controller.controller import require_verified

        command = (f"dexgrasp track --verify --model {self.model_dir} --backend {self.backend} "
                   f"--precision {requested}")
        return require_verified(self.manifest, self.model_dir, self.backend, self.precision, allow_unverified,
                                verify_command=command, allow_option="tracker.options.allow_unverified")

    def _check(self, image_bgr: np.ndarray) -> None:
        check_frame(image_bgr)
        if tuple(image_bgr.shape[:2]) != self.frame_hw:
            raise ObservationError(
                f"frame is {image_bgr.shape[1]}x{image_bgr.shape[0]}, the exported tracker runs at "
                f"{self.frame_hw[1]}x{self.frame_hw[0]} (re-export with --height/--width for this camera)")

    def _check_mask(self, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != self.frame_hw:
            raise ObservationError(f"initial mask has shape {mask.shape}, expected {self.frame_hw} (HxW)")
        if mask.dtype == bool:
            return mask.astype(np.uint8)
        if not np.issubdtype(mask.dtype, np.integer) or not np.isin(mask, (0, 1)).all():
            raise ObservationError("initial mask must hold only 0 and 1 (uint8 or bool)")
        return mask.astype(np.uint8)

    def _pad(self, x: np.ndarray) -> np.ndarray:
        left, right, top, bottom = self.pad
        if not any(self.pad):
            return x
        return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)])

    def _preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 HxWx3 -> RGB float [0, 1] 1x3xHpxWp (torchvision to_tensor + zero padding)."""
        left, _, top, _ = self.pad
        h, w = self.frame_hw
        # to_tensor divides by 255 (a multiply by the reciprocal could differ by 1 ulp)
        self._image[0, :, top:top + h, left:left + w] = image_bgr[..., ::-1].transpose(2, 0, 1) / np.float32(255)
        return self._image

    def _add_memory(self, image: np.ndarray, feats: dict) -> None:
        m = self.memory
        out = self.runners[ENCODE_MASK].run({"image": image, "pix_feat": feats["pix_feat"],
                                             "sensory": m.sensory, "masks": m.last_mask})
        m.add(feats["key"], feats["shrinkage"], out["mask_value"], out["obj_summaries"])
        m.sensory[:] = out["sensory_out"]  # deep update
        self.last_mem_ti = self.curr_ti

    def _timings(self, t0: float, graphs: list[str]) -> dict:
        return {"latency_ms": (time.perf_counter() - t0) * 1e3,
                "graph_ms": {g: self.runners[f"cutie_{g}"].stats.samples()[-1] * 1e3 for g in graphs}}

    def _result(self, prob_with_bg: np.ndarray, info: dict) -> TrackResult:
        left, _, top, _ = self.pad
        h, w = self.frame_hw
        prob = prob_with_bg[:, top:top + h, left:left + w]
        mask = (prob.argmax(axis=0) == self.target_channel).astype(np.uint8)
        fg = np.ascontiguousarray(prob[self.target_channel], dtype=np.float32)
        area = int(mask.sum())
        score = float(fg[mask > 0].mean()) if area else 0.0
        lost = area < self.min_area_px
        info = {**info, "area_px": area, "state": self._state}
        if lost:
            info["reason"] = "mask empty (object left the frame or was lost)"
        return TrackResult(mask=mask, prob=fg, score=score, lost=lost, info=info)

    def _lost_result(self, reason: str, info: dict) -> TrackResult:
        h, w = self.frame_hw
        return TrackResult(mask=np.zeros((h, w), np.uint8), prob=np.zeros((h, w), np.float32), score=0.0,
                           lost=True, info={**info, "reason": reason, "state": self._state, "area_px": 0})
