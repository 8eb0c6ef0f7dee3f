"""A planner without a VLM: grounds colour and shape words in the image with OpenCV.

For the embedded default (`configs/sim.yaml`) and for laptops: the synthetic scene is coloured simple
shapes on a table, which HSV thresholds plus contour shape classification find reliably. It answers
the same four tasks through the same PlannerBackend interface as the VLM, in-process or behind the
ZeroMQ server (`dexgrasp planner serve --backend local`). It looks only at the images it is given:
it has no access to the simulator's ground truth, so it exercises the real data path.

Understood words: colours in PALETTE (red, orange, yellow, green, blue, purple) and shapes in
SHAPE_WORDS (cube/block/box, ball/sphere, cylinder/can/bottle, bar/brick, triangle/pyramid), plus
left/right/center for disambiguation. The palette matches runtime/cameras/scene.py. A prompt with none of them
("clear the table") means every object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from runtime.planner.images import decode_image
from runtime.planner.replies import ReplyError
from runtime.planner.wire import TaskRequest, WireImage

# OpenCV HSV (H in 0..179). Saturation/value floors keep the grey/brown table and shadows out.
PALETTE: dict[str, list[tuple[int, int]]] = {
    "red": [(0, 7), (170, 179)],
    "orange": [(8, 21)],
    "yellow": [(22, 34)],
    "green": [(35, 85)],
    "blue": [(95, 128)],
    "purple": [(129, 165)],
}
MIN_SATURATION = 110
MIN_VALUE = 70
MIN_AREA_PX = 60
# word -> the head-image silhouettes it may look like (the synthetic scene draws an upright cylinder
# as a rounded rectangle about twice as tall as wide; seen from above it would be a circle).
SHAPE_WORDS: dict[str, frozenset] = {}
for _words, _shapes in (
    (("cube", "block", "box", "square"), {"square"}),
    (("ball", "sphere", "circle", "disc", "disk", "puck"), {"circle"}),
    (("cylinder", "can", "bottle"), {"rectangle", "circle"}),
    (("bar", "brick", "rectangle"), {"rectangle"}),
    (("triangle", "pyramid", "wedge"), {"triangle"}),
):
    for _w in _words:
        SHAPE_WORDS[_w] = SHAPE_WORDS[_w + ("es" if _w.endswith("x") else "s")] = frozenset(_shapes)
SHAPE_NAMES = {"square": "cube", "circle": "ball", "triangle": "triangle", "rectangle": "cylinder"}
COLOUR_SYNONYMS = {"violet": "purple", "magenta": "purple", "lime": "green", "navy": "blue"}
# Fraction of the wrist image the target colour must fill to count as "in the hand".
WRIST_HOLD_FRACTION = 0.04


@dataclass(frozen=True)
class Detection:
    """One coloured object found in an image: its colour and shape names and pixel box [x1, y1, x2, y2)."""

    colour: str
    shape: str
    box: tuple[int, int, int, int]
    area_px: int

    @property
    def center_x(self) -> float:
        return (self.box[0] + self.box[2]) / 2.0

    def describe(self, width: int) -> str:
        return f"{self.colour} {SHAPE_NAMES[self.shape]} {position_word(self.center_x, width)}"


@dataclass(frozen=True)
class Query:
    """Colour/shape/position words pulled from free text; empty sets mean 'any'."""

    colours: frozenset
    shapes: frozenset
    position: str | None

    def matches(self, d: Detection) -> bool:
        return (not self.colours or d.colour in self.colours) and (not self.shapes or d.shape in self.shapes)


def position_word(center_x: float, width: int) -> str:
    f = center_x / width
    return "on the left" if f < 0.4 else "on the right" if f > 0.6 else "in the center"


def parse_query(text: str | None) -> Query:
    words = re.findall(r"[a-z]+", (text or "").lower())
    colours = {COLOUR_SYNONYMS.get(w, w) for w in words} & set(PALETTE)
    shapes = set().union(*(SHAPE_WORDS[w] for w in words if w in SHAPE_WORDS))
    position = "right" if "right" in words else "left" if "left" in words else \
        "center" if ("center" in words or "middle" in words or "centre" in words) else None
    return Query(frozenset(colours), frozenset(shapes), position)


def colour_mask(hsv: np.ndarray, colour: str) -> np.ndarray:
    import cv2

    mask = np.zeros(hsv.shape[:2], np.uint8)
    for lo, hi in PALETTE[colour]:
        mask |= cv2.inRange(hsv, (lo, MIN_SATURATION, MIN_VALUE), (hi, 255, 255))
    return mask


def classify_shape(contour) -> str:
    """Silhouette by how much of its minimum-area rectangle it fills, and that rectangle's aspect.

    A square fills ~100 % of its rectangle, a disc ~79 %, a triangle ~50 %; this stays right for
    small (30 px) and partly occluded blobs where polygon-vertex counting is unreliable.
    """
    import cv2

    area = cv2.contourArea(contour)
    (_, _), (w, h), _ = cv2.minAreaRect(contour)
    if w < 1 or h < 1:
        return "square"
    aspect = max(w, h) / min(w, h)
    fill = area / (w * h)
    if aspect > 1.6:
        return "rectangle"
    if fill < 0.62:
        return "triangle"
    if fill < 0.88:
        return "circle"
    return "square"


def detect_objects(image_bgr: np.ndarray, min_area_px: int = MIN_AREA_PX) -> list[Detection]:
    """Every saturated coloured blob in the frame, largest first."""
    import cv2

    hsv = cv2.cvtColor(cv2.GaussianBlur(image_bgr, (5, 5), 0), cv2.COLOR_BGR2HSV)
    found = []
    kernel = np.ones((3, 3), np.uint8)
    for colour in PALETTE:
        mask = cv2.morphologyEx(colour_mask(hsv, colour), cv2.MORPH_OPEN, kernel)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            area = int(cv2.contourArea(c))
            if area < min_area_px:
                continue
            x, y, w, h = cv2.boundingRect(c)
            found.append(Detection(colour, classify_shape(c), (x, y, x + w, y + h), area))
    found.sort(key=lambda d: -d.area_px)
    return found


def _pick(candidates: list[Detection], query: Query, width: int) -> Detection:
    """Position word first; otherwise upstream's preference (right, then center, then left)."""
    if query.position == "left":
        return min(candidates, key=lambda d: d.center_x)
    if query.position == "center":
        return min(candidates, key=lambda d: abs(d.center_x - width / 2))
    return max(candidates, key=lambda d: d.center_x)


class LocalBackend:
    """PlannerBackend over OpenCV colour/shape grounding. Thread-safe (stateless); fast (~ms per call)."""

    name = "local"

    def __init__(self, wrist_hold_fraction: float = WRIST_HOLD_FRACTION, min_area_px: int = MIN_AREA_PX) -> None:
        self.wrist_hold_fraction = wrist_hold_fraction
        self.min_area_px = min_area_px

    def close(self) -> None:
        pass

    def _matching(self, image: WireImage, text: str | None) -> tuple[list[Detection], Query, np.ndarray]:
        img = decode_image(image)
        query = parse_query(text)
        return [d for d in detect_objects(img, self.min_area_px) if query.matches(d)], query, img

    def _target(self, head: WireImage, text: str | None) -> Detection:
        """The object `text` describes in the head image, or ReplyError (never a guess)."""
        found, query, _ = self._matching(head, text)
        if not found:
            raise ReplyError(f"no object matching {text!r} is visible in the head image")
        return _pick(found, query, head.width)

    def run(self, request: TaskRequest, deadline: float) -> dict:
        task = request.task
        head = request.images["head"]
        if task == "instruction":
            return {"instruction": f"pick up the {self._target(head, request.prompt).describe(head.width)}"}
        if task == "bbox":
            target = self._target(head, request.instruction)
            sx, sy = head.orig_width / head.width, head.orig_height / head.height
            x1, y1, x2, y2 = target.box
            bbox = [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]
            return {"bbox": bbox, "label": f"{target.colour} {SHAPE_NAMES[target.shape]}",
                    "image_id": head.image_id, "image_size": [head.orig_width, head.orig_height]}
        if task == "verify":
            return self._verify(request)
        if task == "complete":
            found, _, _ = self._matching(head, request.prompt)
            left = ", ".join(d.describe(head.width) for d in found[:5])
            return {"completed": not found,
                    "reasoning": "no matching object left on the table" if not found else f"still there: {left}"}
        raise ValueError(f"unknown task {task!r}")

    def _verify(self, request: TaskRequest) -> dict:
        """Held if the wrist camera is filled enough by the target's colour; failed if the target still
        sits where the head camera sees it and the wrist does not see it."""
        import cv2

        query = parse_query(request.instruction)
        wrist = decode_image(request.images["wrist"])
        hsv = cv2.cvtColor(wrist, cv2.COLOR_BGR2HSV)
        colours = query.colours or frozenset(PALETTE)
        frac = max(float(np.count_nonzero(colour_mask(hsv, c))) / (wrist.shape[0] * wrist.shape[1])
                   for c in colours)
        if frac >= self.wrist_hold_fraction:
            return {"success": True, "reasoning": f"target colour fills {frac:.0%} of the wrist view"}
        found, _, _ = self._matching(request.images["head"], request.instruction)
        if found:
            return {"success": False, "reasoning": "target still visible on the table, not in the wrist view"}
        return {"success": True, "reasoning": "target no longer on the table"}
