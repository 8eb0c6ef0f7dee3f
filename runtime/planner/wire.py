"""The planner link's wire format: msgpack maps on ZeroMQ, never pickle.

Why msgpack: it cannot execute code on load (pickle can), it is fast, and every language reads it
(openpi's `msgpack_numpy` makes the same choice). Images travel as encoded JPEG/PNG bytes, not raw
arrays: a 640x480 head frame is ~30-60 kB as JPEG versus 900 kB raw, and the VLM wants an encoded
image anyway.

One message = one ZeroMQ frame holding one msgpack map with a "type" key:

  client -> server
    hello    {type, protocol, client}                               -> hello_ok | error
    ping     {type, protocol, request_id}                           -> pong
    request  {type, protocol, request_id, episode_id, task, timeout_s,
              prompt?, instruction?, images: {role: Image}}          -> result
  server -> client
    hello_ok {type, protocol, server, backend, tasks, max_message_bytes}
    pong     {type, protocol, request_id, t_server_recv, t_server_send}
    result   {type, protocol, request_id, episode_id, task, ok, result?, error?, timing}

`Image` is {data: bytes, format: "jpeg"|"png", width, height, image_id, orig_width?, orig_height?}:
`width`/`height` are the encoded image's size, `orig_*` the camera frame's size when the client
downscaled before sending (boxes are returned in the original frame's pixels). `timeout_s` is a
relative budget, not an absolute time, because client and server clocks are unrelated.
`timing` holds the server's receive/send times (its own monotonic clock), queue time and VLM latency.

Every decoded message is checked here (types, sizes, known keys) before anything else touches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack

from runtime.errors import DexGraspError

PROTOCOL_VERSION = 1
# A generous cap: two 1280x960 PNGs fit; a runaway or hostile peer does not.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_TEXT_CHARS = 2000
MAX_ID_CHARS = 128
IMAGE_FORMATS = ("jpeg", "png")
TASKS = ("instruction", "bbox", "verify", "complete")
# Which image roles each task needs (the DexGraspVLA task definitions).
TASK_IMAGES = {
    "instruction": ("initial_head", "head"),
    "bbox": ("head",),
    "verify": ("head", "wrist"),
    "complete": ("initial_head", "head"),
}
# Which text fields each task needs.
TASK_TEXT = {
    "instruction": ("prompt",),
    "bbox": ("instruction",),
    "verify": ("instruction",),
    "complete": ("prompt",),
}
ERROR_CODES = (
    "bad_request",     # the request itself is malformed (never retried)
    "busy",            # the server's queue is full
    "timeout",         # the deadline passed (queueing, VLM, or the client's own timer)
    "invalid_reply",   # the VLM answered, but the answer failed validation
    "vlm_error",       # HTTP errors / connection failures after bounded retries
    "unreachable",     # client side: the server did not answer the handshake
    "cancelled",       # client side: the episode moved on
    "stale",           # client side: the answer is for another image or size
    "internal",        # a bug on the server; it logged the traceback and kept serving
)


class WireError(DexGraspError, ValueError):
    """A message could not be decoded or breaks the schema; the text says which field and why."""


@dataclass(frozen=True)
class WireImage:
    """An encoded image plus the facts needed to validate answers about it."""

    data: bytes
    format: str
    width: int
    height: int
    image_id: str
    orig_width: int
    orig_height: int

    def to_wire(self) -> dict:
        return {
            "data": self.data, "format": self.format, "width": self.width, "height": self.height,
            "image_id": self.image_id, "orig_width": self.orig_width, "orig_height": self.orig_height,
        }


def pack(message: dict, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Serialise a message map; refuse (WireError) anything over `max_bytes` instead of sending it."""
    data = msgpack.packb(message, use_bin_type=True)
    if len(data) > max_bytes:
        raise WireError(
            f"{message.get('type', '?')} message is {len(data)} bytes, over the {max_bytes}-byte limit "
            "(send smaller / JPEG images or raise max_message_bytes on both ends)"
        )
    return data


def unpack(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> dict:
    """Decode one frame into a message map, or raise WireError naming the problem.

    msgpack's own limits are tightened so a small frame cannot claim huge containers.
    """
    if len(data) > max_bytes:
        raise WireError(f"frame of {len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        msg = msgpack.unpackb(
            data, raw=False, strict_map_key=True, max_bin_len=max_bytes, max_str_len=max_bytes,
            max_array_len=10_000, max_map_len=1_000, max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise WireError(f"frame is not valid msgpack ({type(exc).__name__}: {exc})") from exc
    if not isinstance(msg, dict):
        raise WireError(f"frame decodes to {type(msg).__name__}, expected a map")
    mtype = msg.get("type")
    if not isinstance(mtype, str):
        raise WireError("message has no string 'type' field")
    proto = msg.get("protocol")
    if proto != PROTOCOL_VERSION:
        raise WireError(f"protocol version {proto!r} is not supported (this end speaks {PROTOCOL_VERSION})")
    return msg


def _text(msg: dict, key: str, limit: int, required: bool = True) -> str | None:
    value = msg.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise WireError(f"field '{key}' must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise WireError(f"field '{key}' is {len(value)} characters, over the limit of {limit}")
    return value


def _positive_int(d: dict, key: str, where: str, limit: int = 16384) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not (0 < value <= limit):
        raise WireError(f"{where}.{key} must be an integer in 1..{limit}, got {value!r}")
    return value


def parse_image(role: str, d: Any) -> WireImage:
    """Validate one image map (not its pixels: decoding happens where the pixels are needed)."""
    where = f"images.{role}"
    if not isinstance(d, dict):
        raise WireError(f"{where} must be a map, got {type(d).__name__}")
    data = d.get("data")
    if not isinstance(data, bytes) or not data:
        raise WireError(f"{where}.data must be non-empty bytes (an encoded JPEG/PNG)")
    fmt = d.get("format")
    if fmt not in IMAGE_FORMATS:
        raise WireError(f"{where}.format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    width = _positive_int(d, "width", where)
    height = _positive_int(d, "height", where)
    image_id = _text(d, "image_id", MAX_ID_CHARS)
    orig_w = d.get("orig_width", width)
    orig_h = d.get("orig_height", height)
    orig_w = _positive_int({"orig_width": orig_w}, "orig_width", where)
    orig_h = _positive_int({"orig_height": orig_h}, "orig_height", where)
    return WireImage(data, fmt, width, height, image_id, orig_w, orig_h)


@dataclass(frozen=True)
class TaskRequest:
    """A validated planner request as the backends see it."""

    request_id: str
    episode_id: str
    task: str
    timeout_s: float
    images: dict[str, WireImage]
    prompt: str | None = None
    instruction: str | None = None

    def to_wire(self) -> dict:
        msg = {
            "type": "request", "protocol": PROTOCOL_VERSION, "request_id": self.request_id,
            "episode_id": self.episode_id, "task": self.task, "timeout_s": self.timeout_s,
            "images": {role: img.to_wire() for role, img in self.images.items()},
        }
        if self.prompt is not None:
            msg["prompt"] = self.prompt
        if self.instruction is not None:
            msg["instruction"] = self.instruction
        return msg


def parse_request(msg: dict) -> TaskRequest:
    """Check a decoded 'request' message against the task's needs; raise WireError naming the field."""
    request_id = _text(msg, "request_id", MAX_ID_CHARS)
    episode_id = _text(msg, "episode_id", MAX_ID_CHARS)
    task = msg.get("task")
    if task not in TASKS:
        raise WireError(f"task must be one of {TASKS}, got {task!r}")
    timeout_s = msg.get("timeout_s")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) \
            or timeout_s <= 0 or timeout_s > 600:
        raise WireError(f"timeout_s must be a number in (0, 600] seconds, got {timeout_s!r}")
    images_raw = msg.get("images")
    if not isinstance(images_raw, dict):
        raise WireError("images must be a map of role -> image")
    images = {}
    for role in TASK_IMAGES[task]:
        if role not in images_raw:
            raise WireError(f"task '{task}' needs image '{role}' (got {sorted(images_raw)})")
        images[role] = parse_image(role, images_raw[role])
    texts = {}
    for key in ("prompt", "instruction"):
        required = key in TASK_TEXT[task]
        value = _text(msg, key, MAX_TEXT_CHARS, required=required)
        if required and not value.strip():
            raise WireError(f"task '{task}' needs a non-empty '{key}'")
        texts[key] = value
    return TaskRequest(request_id, episode_id, task, float(timeout_s), images, **texts)


def hello(client_name: str) -> dict:
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "client": client_name[:MAX_ID_CHARS]}


def ping(request_id: str) -> dict:
    return {"type": "ping", "protocol": PROTOCOL_VERSION, "request_id": request_id}


def error_result(request_id: str, episode_id: str, task: str, code: str, message: str, timing: dict) -> dict:
    """A 'result' message for a failure; `code` is one of ERROR_CODES."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown planner error code {code!r}")
    return {
        "type": "result", "protocol": PROTOCOL_VERSION, "request_id": request_id, "episode_id": episode_id,
        "task": task, "ok": False, "error": {"code": code, "message": message[:MAX_TEXT_CHARS]}, "timing": timing,
    }


def ok_result(request_id: str, episode_id: str, task: str, result: dict, timing: dict) -> dict:
    return {
        "type": "result", "protocol": PROTOCOL_VERSION, "request_id": request_id, "episode_id": episode_id,
        "task": task, "ok": True, "result": result, "timing": timing,
    }
