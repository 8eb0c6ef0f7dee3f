"""Encode camera frames for the wire and decode them on the server, checking what was declared.

The client may downscale a frame before sending (bandwidth on a robot's Wi-Fi); the message then
carries both sizes so the server can return boxes in the original camera frame's pixels.
"""

from __future__ import annotations

import uuid

import numpy as np

from runtime.planner.wire import WireError, WireImage


def encode_image(
    image_bgr: np.ndarray,
    fmt: str = "jpeg",
    quality: int = 90,
    max_side_px: int | None = None,
    image_id: str | None = None,
) -> WireImage:
    """Encode an HxWx3 uint8 BGR frame as JPEG/PNG, optionally downscaled so its longer side is
    at most `max_side_px`. Raises WireError naming the problem for a bad frame."""
    import cv2

    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 \
            or image_bgr.shape[2] != 3 or image_bgr.shape[0] < 2 or image_bgr.shape[1] < 2:
        shape = getattr(image_bgr, "shape", None)
        dtype = getattr(image_bgr, "dtype", None)
        raise WireError(f"planner images must be HxWx3 uint8 BGR, got shape {shape} dtype {dtype}")
    orig_h, orig_w = image_bgr.shape[:2]
    img = image_bgr
    if max_side_px is not None and max(orig_h, orig_w) > max_side_px:
        scale = max_side_px / max(orig_h, orig_w)
        size = (max(2, round(orig_w * scale)), max(2, round(orig_h * scale)))
        img = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", img)
    else:
        raise WireError(f"image format must be 'jpeg' or 'png', got {fmt!r}")
    if not ok:
        raise WireError(f"OpenCV could not encode a {img.shape} frame as {fmt}")
    h, w = img.shape[:2]
    return WireImage(buf.tobytes(), fmt, w, h, image_id or uuid.uuid4().hex[:16], orig_w, orig_h)


def decode_image(image: WireImage) -> np.ndarray:
    """Decode to HxWx3 uint8 BGR; raise WireError if the bytes are not an image or its size differs
    from the declared width/height (a mismatch would put every box in the wrong place)."""
    import cv2

    arr = np.frombuffer(image.data, dtype=np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    if img is None:
        raise WireError(f"image '{image.image_id}' ({len(image.data)} bytes, {image.format}) does not decode")
    h, w = img.shape[:2]
    if (w, h) != (image.width, image.height):
        raise WireError(
            f"image '{image.image_id}' decodes to {w}x{h} but was declared {image.width}x{image.height}"
        )
    return img


def image_from_file(path: str, fmt: str | None = None, max_side_px: int | None = None) -> WireImage:
    """Read an image file (any format OpenCV reads) for `dexgrasp planner ask`."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise WireError(f"cannot read image file '{path}' (missing or not an image)")
    if fmt is None:
        fmt = "png" if path.lower().endswith(".png") else "jpeg"
    return encode_image(img, fmt=fmt, max_side_px=max_side_px)
