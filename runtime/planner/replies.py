"""Parse and validate what a VLM says, so nothing malformed ever reaches the robot.

A VLM's reply is untrusted text. Each task's parser either returns a clean, checked result or raises
ReplyError with a reason a human can act on ("box is reversed: x2=10 <= x1=200"). Repairs are only
the ones that cannot change the meaning: markdown code fences and prose around a single JSON value.
Truncated JSON, NaN, trailing commas inside numbers etc. are rejected, never guessed.

Box coordinates: the VLM sees the image we sent it (`sent` size); the result is returned in the
original camera frame's pixels (`orig` size), scaled by orig/sent when the image was resized.
Some models answer on a 0..1000 grid (`coords="norm1000"`), in 0..1 (`coords="norm1"`) or, like
Qwen2.5-VL, in pixels of their own resized input (`coords="qwen2.5-vl"`, see frames.py).
"""

from __future__ import annotations

import json
import math
import re

from runtime.errors import DexGraspError
from runtime.planner.frames import BOX_FRAMES, BoxFrame, as_frame

MAX_INSTRUCTION_CHARS = 300
COORD_MODES = BOX_FRAMES


class ReplyError(DexGraspError, ValueError):
    """A VLM reply (or a box from anywhere) failed validation; the message says why."""


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str):
    """The single JSON value in `text`, after safe repairs (code fences, surrounding prose).

    Scans for the first '{' or '[' and decodes exactly one JSON value from there with the strict
    decoder (NaN/Infinity rejected). Raises ReplyError if there is none or it is truncated.
    """
    if not isinstance(text, str) or not text.strip():
        raise ReplyError("reply is empty")
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if not starts:
        raise ReplyError(f"reply has no JSON object or list: {_clip(text)!r}")
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    try:
        value, _end = decoder.raw_decode(candidate, min(starts))
    except json.JSONDecodeError as exc:
        raise ReplyError(f"reply JSON is malformed or truncated ({exc.msg} at char {exc.pos}): {_clip(text)!r}") from exc
    except ValueError as exc:  # from _reject_constant
        raise ReplyError(str(exc)) from exc
    return value


def _reject_constant(name: str):
    raise ValueError(f"reply JSON contains {name}, which is not a number")


def _clip(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[:n] + "..."


def validate_box(
    box,
    width: int,
    height: int,
    *,
    min_side_px: float = 4.0,
    max_area_frac: float = 0.9,
    tolerance_px: float = 2.0,
) -> tuple[float, float, float, float]:
    """Check `box` = [x1, y1, x2, y2] against a `width` x `height` image and return it as floats.

    Rejects (ReplyError, with the reason): not 4 numbers, booleans, NaN/inf, negative values,
    reversed corners, any corner outside the image by more than `tolerance_px` (within it: clipped,
    since models often say 640 for the last pixel column), a side shorter than `min_side_px`, and a
    box covering more than `max_area_frac` of the image (a model that cannot find the object tends to
    answer with the whole frame, and a whole-frame mask would make the controller grasp at random).
    """
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ReplyError(f"box must be a list of 4 numbers [x1, y1, x2, y2], got {box!r}")
    vals = []
    for name, v in zip(("x1", "y1", "x2", "y2"), box, strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ReplyError(f"box {name} is not a number: {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ReplyError(f"box {name} is not finite: {v}")
        if v < 0:
            raise ReplyError(f"box {name}={v:g} is negative")
        vals.append(v)
    x1, y1, x2, y2 = vals
    if x2 <= x1 or y2 <= y1:
        raise ReplyError(f"box is reversed or empty: [{x1:g}, {y1:g}, {x2:g}, {y2:g}] needs x1 < x2 and y1 < y2")
    if x2 > width + tolerance_px or y2 > height + tolerance_px:
        raise ReplyError(
            f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is outside the {width}x{height} image "
            "(an answer for another image size?)"
        )
    x2, y2 = min(x2, float(width)), min(y2, float(height))
    if x1 >= width or y1 >= height:
        raise ReplyError(f"box starts outside the {width}x{height} image: x1={x1:g}, y1={y1:g}")
    if (x2 - x1) < min_side_px or (y2 - y1) < min_side_px:
        raise ReplyError(
            f"box {x2 - x1:g}x{y2 - y1:g} px is degenerate (sides must be >= {min_side_px:g} px)"
        )
    frac = (x2 - x1) * (y2 - y1) / float(width * height)
    if frac > max_area_frac:
        raise ReplyError(f"box covers {frac:.0%} of the image (> {max_area_frac:.0%}): not a single object")
    return x1, y1, x2, y2


def parse_box_reply(
    text: str,
    sent_size: tuple[int, int],
    orig_size: tuple[int, int],
    coords: str | BoxFrame = "pixels",
    **limits,
) -> dict:
    """Parse a bounding-box reply into {"bbox": [x1, y1, x2, y2] (ints, original-frame pixels), "label"}.

    Accepts {"bbox_2d": [...]} / {"bbox": [...]} / {"box": [...]} with an optional "label", a list with
    exactly one such object, or a bare list of 4 numbers. More than one object is ambiguous: rejected.
    """
    frame = as_frame(coords)
    value = extract_json(text)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    label = ""
    if isinstance(value, dict):
        keys = [k for k in ("bbox_2d", "bbox", "box") if k in value]
        if not keys:
            raise ReplyError(f"box reply has no 'bbox_2d'/'bbox' key: {_clip(json.dumps(value))}")
        raw_box = value[keys[0]]
        raw_label = value.get("label", "")
        label = raw_label.strip()[:80] if isinstance(raw_label, str) else ""
        if raw_box is None:
            raise ReplyError(f"the model reports the object is not visible (label {label!r})")
    elif isinstance(value, list) and len(value) == 4 and not any(isinstance(v, (list, dict)) for v in value):
        raw_box = value
    elif isinstance(value, list):
        raise ReplyError(f"box reply lists {len(value)} items; exactly one object was asked for")
    else:
        raise ReplyError(f"box reply is a {type(value).__name__}, expected an object with 'bbox_2d'")
    sent_w, sent_h = sent_size
    grid_w, grid_h = frame.grid(sent_w, sent_h)
    x1, y1, x2, y2 = validate_box(raw_box, grid_w, grid_h, **_scaled_limits(limits, grid_w / sent_w))
    orig_w, orig_h = orig_size
    sx, sy = orig_w / grid_w, orig_h / grid_h
    out = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
    bbox = [int(round(out[0])), int(round(out[1])), int(round(out[2])), int(round(out[3]))]
    bbox[2], bbox[3] = min(bbox[2], orig_w), min(bbox[3], orig_h)
    return {"bbox": bbox, "label": label}


def _scaled_limits(limits: dict, scale: float) -> dict:
    """Pixel limits (given in pixels of the sent image) expressed on the reply's coordinate grid."""
    out = dict(limits)
    out["min_side_px"] = out.get("min_side_px", 4.0) * scale
    out["tolerance_px"] = out.get("tolerance_px", 2.0) * scale
    return out


_ANSWER_LINE = re.compile(r"answer\s*[:=]\s*\**\s*(true|false|yes|no)\b", re.IGNORECASE)
_BOOL_WORD = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_TRUE_WORDS = ("true", "yes")


def parse_bool_reply(text: str, key: str) -> dict:
    """Parse a yes/no reply into {key: bool, "reasoning": str}; ambiguity is an error, not a guess.

    Order of trust: a JSON object with a boolean `key` (or "answer"); then the last "ANSWER: true|false"
    line the prompt asks for; then a reply whose only boolean words are all the same. A reply that says
    both "true" and "false" without an ANSWER line is rejected (upstream would have taken "true").
    """
    if not isinstance(text, str) or not text.strip():
        raise ReplyError("reply is empty")
    reasoning = _clip(text.strip(), 400)
    if "{" in text:
        try:
            value = extract_json(text)
        except ReplyError:
            value = None
        if isinstance(value, dict):
            for k in (key, "answer", "result"):
                if k in value:
                    v = value[k]
                    if isinstance(v, bool):
                        why = value.get("reasoning", value.get("reason", reasoning))
                        return {key: v, "reasoning": _clip(str(why), 400)}
                    raise ReplyError(f"reply field '{k}' is {v!r}, not a JSON boolean")
    answers = _ANSWER_LINE.findall(text)
    if answers:
        return {key: answers[-1].lower() in _TRUE_WORDS, "reasoning": reasoning}
    words = {w.lower() for w in _BOOL_WORD.findall(text)}
    if words == {"true"}:
        return {key: True, "reasoning": reasoning}
    if words == {"false"}:
        return {key: False, "reasoning": reasoning}
    if words:
        raise ReplyError(f"reply is ambiguous (says both true and false, no ANSWER line): {_clip(text)!r}")
    raise ReplyError(f"reply has no true/false answer: {_clip(text)!r}")


def parse_instruction_reply(text: str) -> dict:
    """Clean a grasping-instruction reply into {"instruction": str}: one short sentence naming one object.

    Strips code fences, quotes and an "Instruction:" prefix; rejects empty, multi-paragraph or overlong
    text (a rambling reply is a sign the model did not follow the task, and the text is fed verbatim to
    the box task next).
    """
    if not isinstance(text, str):
        raise ReplyError("reply is not text")
    fenced = _FENCE.search(text)
    s = (fenced.group(1) if fenced else text).strip()
    s = re.sub(r"^(grasping\s+)?instruction\s*:\s*", "", s, flags=re.IGNORECASE).strip()
    s = s.strip("\"'` ").strip()
    if not s:
        raise ReplyError("instruction reply is empty")
    lines = [ln.strip() for ln in s.splitlines() if ln.strip()]
    if len(lines) > 2:
        raise ReplyError(f"instruction reply has {len(lines)} lines; one sentence was asked for: {_clip(s)!r}")
    s = " ".join(lines)
    if len(s) > MAX_INSTRUCTION_CHARS:
        raise ReplyError(f"instruction reply is {len(s)} characters (limit {MAX_INSTRUCTION_CHARS})")
    if any(ord(c) < 32 for c in s):
        raise ReplyError("instruction reply contains control characters")
    return {"instruction": s}
