"""H.264 (yuv420p) video through PyAV: the format every browser and every LeRobot loader plays.

OpenCV's mp4v (MPEG-4 part 2) does not play in browsers, and OpenCV's own H.264 depends on how
the wheel was built; PyAV's wheels bundle FFmpeg with libx264, so the same code writes the same
files everywhere. Frame k gets pts k in a 1/fps time base: a frame's timestamp is exactly k / fps,
which is what LeRobot's decoders query (tolerance 1e-4 s). yuv420p needs even sizes: an odd width
or height is padded by one edge pixel (never cropped: no recorded pixel is lost).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

CODEC = "libx264"
PIX_FMT = "yuv420p"


def available() -> bool:
    """True when PyAV is installed and its FFmpeg has libx264."""
    try:
        import av
    except ImportError:
        return False
    return CODEC in av.codecs_available


def even_size(height: int, width: int) -> tuple[int, int]:
    return height + (height % 2), width + (width % 2)


def pad_even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    eh, ew = even_size(h, w)
    if (eh, ew) == (h, w):
        return frame
    return np.pad(frame, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")


class H264Writer:
    """Write RGB (or BGR, `bgr=True`) uint8 frames of one size to an .mp4 file.

    crf 23 / preset "veryfast" by default: near-transparent for watching and for training images,
    and a 3-panel 240-px frame encodes in a few milliseconds on one core. `gop` is the keyframe
    interval in frames (small = faster random access for data loaders, larger files)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23, preset: str = "veryfast",
                 gop: int | None = None, bgr: bool = False, threads: int = 1) -> None:
        import av

        self.path = Path(path)
        self.fps = fps
        self.bgr = bgr
        self._options = {"crf": str(crf), "preset": preset}
        self._gop = gop
        self._threads = threads
        self._container = av.open(str(self.path), mode="w")
        self._stream = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def _open_stream(self, height: int, width: int) -> None:
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(CODEC, rate=rate, options=self._options)
        stream.width, stream.height = width, height
        stream.pix_fmt = PIX_FMT
        stream.time_base = Fraction(1, 1) / rate
        if self._gop:
            stream.codec_context.gop_size = self._gop
        stream.codec_context.thread_count = self._threads
        self._stream = stream
        self._size = (height, width)

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = pad_even(np.ascontiguousarray(frame, dtype=np.uint8))
        if self._stream is None:
            self._open_stream(*frame.shape[:2])
        if frame.shape[:2] != self._size:
            raise ValueError(f"{self.path.name}: frame size {frame.shape[:2]} differs from the first frame's {self._size}")
        vf = av.VideoFrame.from_ndarray(frame, format="bgr24" if self.bgr else "rgb24")
        vf.pts = self.frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe(path: str | Path) -> dict:
    """Codec, pixel format, size, fps and the decoded frame count of a video (decodes it all)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
                "width": stream.codec_context.width, "height": stream.codec_context.height,
                "fps": float(stream.average_rate or stream.base_rate or 0)}
        info["frames"] = sum(1 for _ in container.decode(stream))
    return info
