"""A classical CPU mask tracker that needs no weights: the embedded default's tracker.

Upstream turns the planner's box into a mask with SAM and tracks it with Cutie (both GPU models).
This tracker keeps the same contract (`runtime.tracking.base.Tracker`) with OpenCV only:

init (box or mask)
    GrabCut inside the box (on a crop, a few ms), falling back to colour back-projection; the
    largest connected component is the target. A foreground-vs-surroundings colour model
    (`ColorModel`) and a reference area are fitted from it.
track (every frame)
    1. predict: Lucas-Kanade flow of corners on the previous mask -> similarity warp of the mask
       (constant-velocity guess when no point survives);
    2. measure: colour probability in a search window around the prediction, thresholded; the
       connected component that best overlaps the prediction is the new mask (so occluders, which
       have other colours, are cut out, and the mask is exactly the visible part);
    3. judge: score = colour support x area consistency; `lost` when the mask is (nearly) empty,
       the target left the frame, or the score stays low. While lost, the last good mask is kept
       and, optionally, the whole frame is searched for a component of the right colour and size
       (re-detection), so a briefly hidden object is picked up again without a new box.
Per-frame cost is a few milliseconds at 640x480: everything but one grey conversion runs on a
crop around the target.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

from runtime.errors import ObservationError
from runtime.tracking.base import TrackResult, check_frame
from runtime.tracking.color_model import ColorModel
from runtime.tracking.flow import Motion, PointFlow, roi_slices

log = logging.getLogger(__name__)


@dataclass
class ClassicalTrackerConfig:
    """Tuning knobs (defaults suit 640x480 tabletop scenes).

    init_method:        "grabcut" (GrabCut in the box, colour fallback) or "color".
    prob_threshold:     colour probability (0..255) above which a pixel is target.
    search_margin:      search window = predicted box grown by this fraction of its size (+16 px).
    lost_area_ratio:    lost when the visible area falls below this fraction of the reference.
    lost_score:         lost when the score falls below this.
    min_area_px:        masks smaller than this count as empty.
    redetect:           search the whole frame for the target while lost.
    area_adapt:         EMA rate of the reference area when tracking confidently (scale change).
    """

    init_method: str = "grabcut"
    prob_threshold: int = 100
    search_margin: float = 0.6
    lost_area_ratio: float = 0.15
    lost_score: float = 0.2
    min_area_px: int = 12
    redetect: bool = True
    area_adapt: float = 0.05
    max_points: int = 40

    def __post_init__(self) -> None:
        if self.init_method not in ("grabcut", "color"):
            raise ValueError(f"init_method must be 'grabcut' or 'color', got {self.init_method!r}")
        if not 0 < self.prob_threshold < 255:
            raise ValueError(f"prob_threshold must be in (0, 255), got {self.prob_threshold}")


def _largest_component(binary: np.ndarray) -> np.ndarray:
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if n <= 1:
        return np.zeros_like(binary)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (lab == best).astype(np.uint8)


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    x, y, w, h = cv2.boundingRect(mask)
    return None if w == 0 or h == 0 else (x, y, x + w, y + h)


def _grow(box, frac: float, extra_px: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    gx = int(round((x2 - x1) * frac)) + extra_px
    gy = int(round((y2 - y1) * frac)) + extra_px
    h, w = hw
    return max(0, x1 - gx), max(0, y1 - gy), min(w, x2 + gx), min(h, y2 + gy)


class ClassicalTracker:
    """Box-initialised colour + optical-flow mask tracker (see the module docstring).

    All methods block the calling thread for a few milliseconds (init: GrabCut, up to ~20 ms for a
    large box); nothing is shared between threads. Frames must be BGR uint8 of the size seen at
    `init`, otherwise `ObservationError`.
    """

    def __init__(self, config: ClassicalTrackerConfig | None = None) -> None:
        self.config = config or ClassicalTrackerConfig()
        self.flow = PointFlow(max_points=self.config.max_points)
        self.reset()

    def reset(self) -> None:
        """Forget the target; the next call must be `init`."""
        self._hw: tuple[int, int] | None = None
        self._model: ColorModel | None = None
        self._mask: np.ndarray | None = None  # last visible mask (full frame)
        self._extent: np.ndarray | None = None  # whole-object estimate, moved with the flow
        self._extent_box = np.zeros(4)  # the same as an unclipped float box (may leave the frame)
        self._gray: np.ndarray | None = None
        self._points = np.zeros((0, 2), np.float32)
        self._ref_area = 0.0
        self._velocity = np.zeros(2)
        self._motion_step = np.zeros(2)
        self._fully_visible = True
        self._lost_frames = 0
        self.frames = 0

    @property
    def initialized(self) -> bool:
        return self._hw is not None

    # ------------------------------------------------------------------ init
    def init(self, image_bgr: np.ndarray, box_xyxy: np.ndarray | None = None,
             mask: np.ndarray | None = None) -> TrackResult:
        """(Re-)initialise from a pixel box [x1, y1, x2, y2] or a {0,1} mask of the frame's size.

        A box that is non-finite, reversed, empty or entirely outside the frame raises
        ObservationError naming it. If nothing can be segmented (empty mask), the result is
        `lost=True` with an empty mask and `track()` keeps answering lost until the next `init`.
        """
        t0 = time.perf_counter()
        check_frame(image_bgr)
        self.reset()
        h, w = image_bgr.shape[:2]
        hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
        if mask is not None:
            target = self._validate_mask(mask, (h, w))
            how = "mask"
        elif box_xyxy is not None:
            box = self._validate_box(box_xyxy, (h, w))
            target, how = self._segment_box(image_bgr, hsv, box)
        else:
            raise ObservationError("tracker init needs a box_xyxy or a mask, got neither")
        self._hw = (h, w)
        self._gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        area = int(target.sum())
        if area < self.config.min_area_px:
            log.warning("tracker init: segmentation is empty (%d px, method %s)", area, how)
            return TrackResult(np.zeros((h, w), np.uint8), score=0.0, lost=True,
                               info={"reason": "empty_init", "init_method": how,
                                     "latency_ms": (time.perf_counter() - t0) * 1e3})
        self._fit_model(hsv, target)
        self._mask = target
        self._extent = target
        self._extent_box = np.array(_box_of(target), dtype=np.float64)
        self._ref_area = float(area)
        self._points = self.flow.select(self._gray, target, _grow(_box_of(target), 0.2, 4, (h, w)))
        return TrackResult(target.copy(), score=1.0, lost=False,
                           info={"init_method": how, "area_px": area, "points": len(self._points),
                                 "latency_ms": (time.perf_counter() - t0) * 1e3})

    @staticmethod
    def _validate_box(box_xyxy, hw) -> tuple[int, int, int, int]:
        b = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
        if b.size != 4 or not np.all(np.isfinite(b)):
            raise ObservationError(f"tracker init box must be 4 finite numbers [x1, y1, x2, y2], got {box_xyxy!r}")
        x1, y1, x2, y2 = b
        if x2 <= x1 or y2 <= y1:
            raise ObservationError(f"tracker init box {b.tolist()} is empty or reversed (need x2 > x1, y2 > y1)")
        h, w = hw
        cx1, cy1 = int(np.clip(np.floor(x1), 0, w)), int(np.clip(np.floor(y1), 0, h))
        cx2, cy2 = int(np.clip(np.ceil(x2), 0, w)), int(np.clip(np.ceil(y2), 0, h))
        if cx2 - cx1 < 2 or cy2 - cy1 < 2:
            raise ObservationError(f"tracker init box {b.tolist()} lies outside the {w}x{h} frame")
        return cx1, cy1, cx2, cy2

    @staticmethod
    def _validate_mask(mask, hw) -> np.ndarray:
        m = np.asarray(mask)
        if m.shape != hw:
            raise ObservationError(f"tracker init mask is {m.shape}, frame is {hw}")
        return (m > 0).astype(np.uint8)

    def _segment_box(self, image, hsv, box) -> tuple[np.ndarray, str]:
        h, w = image.shape[:2]
        if self.config.init_method == "grabcut":
            target = self._grabcut(image, box)
            if target.sum() >= self.config.min_area_px:
                return target, "grabcut"
        return self._color_segment(hsv, box), "color"

    @staticmethod
    def _grabcut(image, box) -> np.ndarray:
        h, w = image.shape[:2]
        roi = _grow(box, 0.25, 6, (h, w))
        sy, sx = roi_slices(roi)
        crop = np.ascontiguousarray(image[sy, sx])
        rect = (box[0] - roi[0], box[1] - roi[1], box[2] - box[0], box[3] - box[1])
        gc = np.zeros(crop.shape[:2], np.uint8)
        full = np.zeros((h, w), np.uint8)
        if rect[2] >= crop.shape[1] or rect[3] >= crop.shape[0]:
            return full  # box covers the whole frame: GrabCut has no background to learn from
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(crop, gc, rect, bgd, fgd, 3, cv2.GC_INIT_WITH_RECT)
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
        full[sy, sx] = _largest_component(fg)
        return full

    def _color_segment(self, hsv, box) -> np.ndarray:
        h, w = hsv.shape[:2]
        inner = np.zeros((h, w), np.uint8)
        x1, y1, x2, y2 = box
        mx, my = (x2 - x1) // 5, (y2 - y1) // 5  # centre of the box: mostly object
        inner[y1 + my:y2 - my, x1 + mx:x2 - mx] = 1
        ring = np.zeros((h, w), np.uint8)
        gx1, gy1, gx2, gy2 = _grow(box, 0.5, 8, (h, w))
        ring[gy1:gy2, gx1:gx2] = 1
        ring[y1:y2, x1:x2] = 0
        model = ColorModel()
        model.fit(hsv, inner, ring)
        prob = model.prob(hsv[y1:y2, x1:x2])
        fg = (prob >= self.config.prob_threshold).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        out = np.zeros((h, w), np.uint8)
        out[y1:y2, x1:x2] = _largest_component(fg)
        return out

    def _fit_model(self, hsv, target) -> None:
        h, w = target.shape
        size = max(8, int(np.sqrt(target.sum())))
        k = np.ones((3, 3), np.uint8)
        near = cv2.dilate(target, k, iterations=max(4, size // 2))
        ring = near - cv2.dilate(target, k, iterations=2)
        self._model = ColorModel()
        self._model.fit(hsv, target, ring)

    # ------------------------------------------------------------------ track
    def track(self, image_bgr: np.ndarray) -> TrackResult:
        """Propagate the mask to `image_bgr`. Raises RuntimeError before `init`, ObservationError
        for a frame that is not BGR uint8 of the init size."""
        if self._hw is None:
            raise RuntimeError("ClassicalTracker.track() called before init()")
        check_frame(image_bgr, self._hw)
        t0 = time.perf_counter()
        self.frames += 1
        h, w = self._hw
        empty = np.zeros((h, w), np.uint8)
        if self._model is None:  # init found nothing: stay lost until re-init
            return TrackResult(empty, score=0.0, lost=True, info={"reason": "empty_init"})
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        prev_box = _box_of(self._extent)
        grow = self.config.search_margin * (1 + min(self._lost_frames, 10) * 0.5)
        roi = _grow(self._shift(prev_box, self._velocity), grow, 16, (h, w))
        roi = self._union(roi, _grow(prev_box, 0.2, 4, (h, w)))
        motion = self.flow.estimate(self._gray, gray, self._points, roi)
        hold_m = np.array([[1.0, 0, self._velocity[0]], [0, 1.0, self._velocity[1]]])
        sy, sx = roi_slices(roi)
        hsv = cv2.cvtColor(image_bgr[sy, sx], cv2.COLOR_BGR2HSV)
        prob = self._model.prob(hsv)
        fg = (prob >= self.config.prob_threshold).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        # two motion hypotheses: the flow's, and constant velocity. Flow points on an occluder's
        # edge can follow the occluder; the hypothesis whose predicted extent covers more
        # target-coloured pixels wins.
        predicted = self._warp(self._extent, hold_m, roi)
        if motion.method != "none":
            flow_m = self._extent_motion(motion)
            by_flow = self._warp(self._extent, flow_m, roi)
            if int((by_flow & fg).sum()) > int((predicted & fg).sum()):  # ties: trust the smooth prior
                predicted = by_flow
                motion = Motion(flow_m, motion.method, motion.points, motion.inliers)
            else:
                motion = Motion(hold_m, "velocity", motion.points, 0)
        self._motion_step = self._step_of(motion.matrix if motion.method != "none" else hold_m)
        extent = empty.copy()
        extent[sy, sx] = predicted
        chosen = self._pick_component(fg, cv2.dilate(predicted, np.ones((5, 5), np.uint8)))
        mask = empty.copy()
        mask[sy, sx] = chosen
        box_pred = self._extent_box + np.tile(self._motion_step, 2)
        result = self._judge(prob, chosen, mask, box_pred)
        if result.lost and self.config.redetect:
            found = self._redetect(image_bgr)
            if found is not None:
                mask = extent = found
                result = TrackResult(found, score=0.5, lost=False, info={"reason": "redetected", "area_ratio": 1.0})
        self._update(gray, mask, extent, result, prev_box)
        result.info.update(points=motion.points, inliers=motion.inliers, motion=motion.method,
                           latency_ms=(time.perf_counter() - t0) * 1e3)
        return result

    def _step_of(self, m: np.ndarray) -> np.ndarray:
        """Displacement of the extent's centre under the affine `m`."""
        c = np.append(self._centre(self._extent), 1.0)
        return m @ c - c[:2]

    def _extent_motion(self, motion: Motion) -> np.ndarray:
        """The flow's motion as applied to the whole-object extent.

        Similarity (with rotation and scale) only when the target was fully visible and many
        points agree; otherwise the translation of the extent's centre: a few points on a
        half-hidden object cannot measure scale, and a wrong scale compounds frame after frame.
        """
        m = motion.matrix
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        if motion.method == "similarity" and motion.inliers >= 8 and self._fully_visible and abs(scale - 1) < 0.05:
            return m
        t = self._step_of(m)
        return np.array([[1.0, 0.0, t[0]], [0.0, 1.0, t[1]]])

    @staticmethod
    def _shift(box, v) -> tuple[int, int, int, int]:
        dx, dy = int(round(v[0])), int(round(v[1]))
        return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy

    @staticmethod
    def _union(a, b) -> tuple[int, int, int, int]:
        return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])

    @staticmethod
    def _warp(mask, m, roi) -> np.ndarray:
        m_roi = m.copy()
        m_roi[:, 2] -= (roi[0], roi[1])
        size = (roi[2] - roi[0], roi[3] - roi[1])
        return cv2.warpAffine(mask, m_roi, size, flags=cv2.INTER_NEAREST, borderValue=0)

    def _pick_component(self, fg, predicted) -> np.ndarray:
        """The colour component overlapping the prediction most (or nearest to it)."""
        n, lab, stats, cents = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n <= 1:
            return np.zeros_like(fg)
        areas = stats[1:, cv2.CC_STAT_AREA]
        overlap = np.bincount(lab[predicted > 0].ravel(), minlength=n)[1:]
        if overlap.max() > 0:
            # every component that the prediction touches substantially belongs to the target
            # (an occluder can split the visible object in two)
            keep = np.flatnonzero((overlap > 0.2 * overlap.max()) | (overlap > 0.5 * areas)) + 1
        else:
            ys, xs = np.nonzero(predicted)
            if xs.size == 0:
                return np.zeros_like(fg)
            c = np.array([xs.mean(), ys.mean()])
            d = np.linalg.norm(cents[1:] - c, axis=1)
            plausible = areas >= self.config.lost_area_ratio * self._ref_area
            if not plausible.any():
                return np.zeros_like(fg)
            keep = [1 + int(np.argmin(np.where(plausible, d, np.inf)))]
        return np.isin(lab, keep).astype(np.uint8)

    def _judge(self, prob, chosen, mask, box_pred) -> TrackResult:
        """Score the observation; decide lost (and why) from the visible area and the extent."""
        cfg = self.config
        area = float(chosen.sum())
        ratio = area / self._ref_area if self._ref_area else 0.0
        area_term = min(ratio, 1.0 / ratio) if ratio > 0 else 0.0
        colour_term = float(prob[chosen > 0].mean()) / 255.0 if area else 0.0
        score = float(np.sqrt(area_term) * colour_term)
        h, w = self._hw
        x1, y1, x2, y2 = box_pred
        clipped = max(0.0, min(x2, w) - max(x1, 0)) * max(0.0, min(y2, h) - max(y1, 0))
        in_frame = clipped / max((x2 - x1) * (y2 - y1), 1e-6)
        info = {"area_px": int(area), "area_ratio": ratio, "colour": colour_term, "in_frame": in_frame}
        reason = None
        if area < cfg.min_area_px:
            reason = "empty"
        elif ratio < cfg.lost_area_ratio or score < cfg.lost_score:
            reason = "low_confidence"
        if reason is not None:
            if in_frame < 0.6:  # the predicted whole object is mostly outside the image
                reason = "left_frame"
            info["reason"] = reason
            return TrackResult(mask, score=score, lost=True, info=info)
        return TrackResult(mask, score=score, lost=False, info=info)

    def _redetect(self, image_bgr) -> np.ndarray | None:
        hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
        fg = (self._model.prob(hsv) >= self.config.prob_threshold).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, lab, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n <= 1:
            return None
        areas = stats[1:, cv2.CC_STAT_AREA].astype(float)
        ok = (areas >= 0.5 * self._ref_area) & (areas <= 2.0 * self._ref_area)
        if not ok.any():
            return None
        best = 1 + int(np.argmax(np.where(ok, areas, -1)))
        return (lab == best).astype(np.uint8)

    @staticmethod
    def _centre(mask) -> np.ndarray:
        x1, y1, x2, y2 = _box_of(mask)
        return np.array([(x1 + x2) / 2, (y1 + y2) / 2])

    def _update(self, gray, mask, extent, result: TrackResult, prev_box) -> None:
        self._gray = gray
        self._extent = extent if extent.any() else self._extent
        if result.lost:
            self._lost_frames += 1
            self._velocity *= 0.8  # keep searching around the last place, slowly stop extrapolating
            self._extent_box = self._extent_box + np.tile(self._motion_step, 2)
            self._fully_visible = False
            # points only on what is visibly the target: never on the occluder hiding it
            box = _box_of(mask) if mask.sum() >= self.config.min_area_px else None
            self._points = self.flow.select(gray, mask, _grow(box, 0.2, 4, self._hw)) if box else self._points[:0]
            return
        box = _box_of(mask)
        ratio = result.info.get("area_ratio", 0.0)
        fully_visible = 0.9 < ratio < 1.1 or result.info.get("reason") == "redetected"
        if fully_visible and self._fully_visible and self._lost_frames == 0:
            step = self._centre(mask) - self._centre(self._mask)  # observed whole-object motion
        else:
            step = self._motion_step  # the chosen motion hypothesis (visible part may change shape)
        self._velocity = 0.5 * self._velocity + 0.5 * step
        if fully_visible:  # the observation is the extent
            self._extent = mask
            self._extent_box = np.array(box, dtype=np.float64)
            a = self.config.area_adapt
            self._ref_area = (1 - a) * self._ref_area + a * float(mask.sum())
        else:
            self._extent_box = self._extent_box + np.tile(step, 2)
        self._fully_visible = fully_visible
        self._lost_frames = 0
        self._mask = mask
        self._points = self.flow.select(gray, mask, _grow(box, 0.2, 4, self._hw))
