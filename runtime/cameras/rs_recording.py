"""Write a RealSense recording from BGR images, without a camera.

Why: RealSense playback (`RealSenseCamera(bag_path=...)`) should be testable and demonstrable on a
machine with no device. librealsense's `software_device` behaves like a device whose frames we
inject, and its `recorder` writes them exactly as a live recording would be written (rosbag2 `.db3`
for librealsense >= 2.57, `.bag` before). Used by the tests, and to turn synthetic-scene frames into
a recording that exercises the real playback path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from runtime.errors import require


def recording_suffix() -> str:
    """The file suffix the installed librealsense records to (".db3" or ".bag")."""
    rs = require("pyrealsense2", "realsense", "RealSense recordings")
    version = tuple(int(p) for p in rs.__version__.split(".")[:2])
    return ".db3" if version >= (2, 57) else ".bag"


def write_recording(path: str | Path, images: Iterable[np.ndarray], fps: float = 30.0, *,
                    start_ms: float = 1000.0, serial: str = "000000000000") -> int:
    """Record BGR uint8 images (all the same size) as a color stream at `fps`. Returns frames written.

    Timestamps are on the device ("hardware_clock") domain: start_ms + i * 1000 / fps.
    """
    rs = require("pyrealsense2", "realsense", "RealSense recordings")
    path = Path(path)
    it = iter(images)
    first = next(it, None)
    if first is None:
        raise ValueError("write_recording: no images given")
    h, w = first.shape[:2]
    dev = rs.software_device()
    sensor = dev.add_sensor("Color")
    intr = rs.intrinsics()
    intr.width, intr.height, intr.ppx, intr.ppy, intr.fx, intr.fy = w, h, w / 2, h / 2, float(w), float(w)
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid, vs.width, vs.height = rs.stream.color, 0, 0, w, h
    vs.fps, vs.bpp, vs.fmt, vs.intrinsics = int(fps), 3, rs.format.bgr8, intr
    profile = sensor.add_video_stream(vs)
    dev.register_info(rs.camera_info.serial_number, serial)
    dev.register_info(rs.camera_info.name, "software recording")
    recorder = rs.recorder(str(path), dev)
    queue = rs.frame_queue(4)
    sensor.open(profile)
    sensor.start(queue)
    n = 0
    try:
        for i, img in enumerate(_chain(first, it)):
            if img.shape != (h, w, 3) or img.dtype != np.uint8:
                raise ValueError(f"write_recording: image {i} is {img.shape} {img.dtype}, expected {(h, w, 3)} uint8")
            f = rs.software_video_frame()
            f.pixels = np.ascontiguousarray(img)
            f.stride, f.bpp = w * 3, 3
            f.timestamp = start_ms + i * 1000.0 / fps
            f.domain = rs.timestamp_domain.hardware_clock
            f.frame_number = i
            f.profile = profile.as_video_stream_profile()
            sensor.on_video_frame(f)
            while queue.poll_for_frame():  # drain: the recorder has already written it
                pass
            n += 1
    finally:
        sensor.stop()
        sensor.close()
        del recorder  # closes the file
    return n


def _chain(first, rest):
    yield first
    yield from rest
