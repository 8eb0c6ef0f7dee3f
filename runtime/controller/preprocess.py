"""Camera frames -> policy inputs, equal to upstream inference.py `process_obs`. Torch-free.

Upstream (per camera, T=1): uint8 BGR HxWx3 -> float /255 -> F.interpolate(bilinear,
align_corners=False, no antialias) to 518x518 -> (1,1,3,518,518); the head mask (HxW) ->
F.interpolate(nearest) -> (> 0.5) as the 4th channel of `rgbm`; the joint state as float32 (1,1,J)
(J = 13 for upstream's 7 arm + 6 hand joints; the model's manifest says how many it reads, and the
runtime passes that count, so a state of another width is refused here, naming both).
Channels stay BGR: the exported encoder flips them to RGB, as upstream's ObsEncoder does.

Bilinear uses torch's half-pixel source index, edge clamping and float32 weights (no antialias);
nearest uses torch's legacy `nearest` index rule floor(dst * in/out).
"""

from __future__ import annotations

import numpy as np

from runtime.errors import ObservationError

IMAGE_SIZE = 518


def _check_image(name: str, img: np.ndarray, channels: int | None) -> None:
    if not isinstance(img, np.ndarray):
        raise ObservationError(f"{name}: expected a numpy array, got {type(img).__name__}")
    want = "HxWx3" if channels else "HxW"
    if (channels and (img.ndim != 3 or img.shape[2] != channels)) or (not channels and img.ndim != 2):
        raise ObservationError(f"{name}: expected a {want} image, got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ObservationError(f"{name}: empty image of shape {img.shape}")
    if img.dtype != np.uint8:
        raise ObservationError(f"{name}: expected dtype uint8, got {img.dtype}")


def linear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch bilinear(align_corners=False) source indices and weights along one axis, in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    # torch evaluates scale * (dst + 0.5) - 0.5 with a single rounding (fused multiply-add).
    src = (np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = src.astype(np.int64)
    lam1 = (src - i0.astype(np.float32)).astype(np.float32)
    lam0 = (np.float32(1) - lam1).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, lam0, lam1


def resize_bilinear(img: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """float32 HxWxC -> size x size x C, exactly torch F.interpolate(bilinear, align_corners=False).

    Written in numpy (separable gathers) rather than cv2.resize: cv2 rounds its interpolation
    weights (errors ~5e-5 on [0, 1] images), torch does not.
    """
    if img.shape[0] == size and img.shape[1] == size:
        return img
    h0, h1, hl0, hl1 = linear_weights(img.shape[0], size)
    w0, w1, wl0, wl1 = linear_weights(img.shape[1], size)
    top, bottom = img[h0], img[h1]
    wl0, wl1 = wl0[None, :, None], wl1[None, :, None]
    upper = top[:, w0] * wl0 + top[:, w1] * wl1
    lower = bottom[:, w0] * wl0 + bottom[:, w1] * wl1
    return (upper * hl0[:, None, None] + lower * hl1[:, None, None]).astype(np.float32)


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """torch 'nearest' source indices: min(floor(dst * float32(in/out)), in - 1)."""
    if in_size == out_size:
        return np.arange(out_size)
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def image_to_input(bgr: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 BGR HxWx3 -> float32 (3, size, size) in [0, 1], still BGR."""
    scaled = bgr.astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(resize_bilinear(scaled, size).transpose(2, 0, 1))


def mask_to_input(mask: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 HxW (0 = background, >0 = target) -> float32 (1, size, size) of {0, 1}."""
    rows = nearest_indices(mask.shape[0], size)
    cols = nearest_indices(mask.shape[1], size)
    resized = mask[rows][:, cols].astype(np.float32)
    return (resized > 0.5).astype(np.float32)[None]


def process_obs(head_bgr: np.ndarray, mask: np.ndarray, wrist_bgr: np.ndarray, state: np.ndarray,
                size: int = IMAGE_SIZE, state_dim: int | None = None) -> dict[str, np.ndarray]:
    """Raw frames + state -> {'rgbm': (1,1,4,S,S), 'right_cam_img': (1,1,3,S,S), 'right_state': (1,1,J)}.

    `state_dim`: the joint count the model reads (its manifest's right_state width); the state must
    have exactly that many values. None takes the state's own width (a recorded state handed to a
    controller, which checks it against its manifest). The count is never assumed: the joint
    layout belongs to the robot config and the model (runtime.joint_space).
    Raises ObservationError naming the input with a wrong shape, dtype or non-finite value.
    """
    _check_image("head image", head_bgr, 3)
    _check_image("wrist image", wrist_bgr, 3)
    _check_image("mask", mask, None)
    if mask.shape != head_bgr.shape[:2]:
        raise ObservationError(f"mask: shape {mask.shape} differs from the head image's {head_bgr.shape[:2]}")
    state = np.asarray(state)
    width = state.shape[-1] if state.ndim else 0
    n = width if state_dim is None else int(state_dim)
    if n < 1 or state.shape not in ((n,), (1, n), (1, 1, n)):
        what = "one row of joint values" if state_dim is None else f"{n} values (the model's right_state width)"
        raise ObservationError(f"state: expected {what}, got shape {state.shape}")
    if not np.issubdtype(state.dtype, np.number) or not np.all(np.isfinite(state)):
        raise ObservationError(f"state: must be finite numbers, got {state.reshape(-1).tolist()}")
    rgbm = np.concatenate([image_to_input(head_bgr, size), mask_to_input(mask, size)], axis=0)
    return {
        "rgbm": rgbm[None, None],
        "right_cam_img": image_to_input(wrist_bgr, size)[None, None],
        "right_state": state.astype(np.float32).reshape(1, 1, n),
    }
