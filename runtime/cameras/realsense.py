"""Intel RealSense cameras through pyrealsense2, live or playing back a recording.

Upstream DexGraspVLA opens two RealSense cameras by serial number (head "third", wrist
"right_first", 640x480) and blocks in `wait_for_frames()` without a timeout. Here:

* devices are selected by serial number; a missing serial is an error that lists what IS plugged in;
* color is requested as bgr8 at the configured resolution and fps (an unsupported mode is an error
  that lists the modes the device offers); depth (z16, aligned to color) is optional;
* every read has an explicit timeout (`try_wait_for_frames(timeout_ms)`); a timeout on a device
  that has vanished from the USB bus is reported as a disconnect, so `CameraWorker` reconnects
  with backoff;
* frame timestamps are mapped to the runtime's monotonic clock (`timestamps.TimestampMapper`);
* a recording (`bag_path`: `.bag` for librealsense < 2.57, `.db3` rosbag2 for newer ones) plays
  back through the same class, in real time or as fast as possible (`real_time=False`); at the end
  of the file `read()` raises DeviceNotConnectedError, and reconnecting plays it again.

pyrealsense2 is imported lazily (extra `realsense`); it needs the system library libusb-1.0.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from runtime.cameras.base import Camera, CameraTimeoutError, Frame
from runtime.cameras.timestamps import TimestampMapper
from runtime.clock import Clock
from runtime.errors import ConfigError, DeviceNotConnectedError, require

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".bag", ".db3")


def _rs():
    return require("pyrealsense2", "realsense", "RealSense cameras")


def find_cameras() -> list[dict]:
    """Connected RealSense devices: [{"name", "serial", "firmware", "usb"}]. Never raises for zero."""
    rs = _rs()
    out = []
    for dev in rs.context().query_devices():
        def info(key, dev=dev):
            return dev.get_info(key) if dev.supports(key) else None

        out.append({"name": info(rs.camera_info.name), "serial": info(rs.camera_info.serial_number),
                    "firmware": info(rs.camera_info.firmware_version),
                    "usb": info(rs.camera_info.usb_type_descriptor)})
    return out


class RealSenseCamera(Camera):
    """One RealSense color stream (optionally with aligned depth), live or from a recording.

    Args:
        name: the runtime's camera name ("third" = head, "right_first" = wrist).
        serial: device serial number; required when more than one device is plugged in.
        width, height, fps: the color mode to request (bgr8).
        clock: the runtime clock (capture times are mapped onto it).
        bag_path: play this recording instead of a live device.
        real_time: playback paced like the recording (True) or as fast as possible (False).
        depth: also stream z16 depth aligned to color (`Frame.depth`).
        start_timeout_ms: how long `connect()` waits for the first frame.
    Blocking: `connect()` blocks up to `start_timeout_ms`; `read(timeout_ms)` up to its timeout.
    """

    def __init__(self, name: str, serial: str | None = None, width: int = 640, height: int = 480,
                 fps: float = 30.0, clock: Clock | None = None, *, bag_path: str | Path | None = None,
                 real_time: bool = True, depth: bool = False, start_timeout_ms: float = 5000.0) -> None:
        super().__init__(name, width, height, fps, clock)
        if serial is not None and (not isinstance(serial, str) or not serial.strip()):
            raise ConfigError(f"camera '{name}': serial must be a non-empty string, got {serial!r}")
        self.serial = serial
        self.bag_path = Path(bag_path) if bag_path is not None else None
        if self.bag_path is not None:
            if self.bag_path.suffix not in RECORDING_SUFFIXES:
                raise ConfigError(f"camera '{name}': bag_path {str(self.bag_path)!r} must end in one of "
                                  f"{RECORDING_SUFFIXES}")
            if not self.bag_path.is_file():
                raise ConfigError(f"camera '{name}': bag_path {str(self.bag_path)!r} does not exist")
        self.real_time = bool(real_time)
        self.depth = bool(depth)
        self.start_timeout_ms = float(start_timeout_ms)
        self.timestamps = TimestampMapper()
        self._pipeline = None
        self._align = None
        self._rs = None
        self._first = None

    def describe(self) -> str:
        if self.bag_path is not None:
            return f"RealSense '{self.name}' (playback of {self.bag_path.name})"
        return f"RealSense '{self.name}' (serial {self.serial or 'any'})"

    # ------------------------------------------------------------------ connect
    def _connect(self) -> None:
        rs = self._rs = _rs()
        ctx = rs.context()
        config = rs.config()
        if self.bag_path is not None:
            config.enable_device_from_file(str(self.bag_path), False)
            config.enable_stream(rs.stream.color)  # a recording has the mode it was recorded with
            if self.depth:
                config.enable_stream(rs.stream.depth)
        else:
            serials = [d.get_info(rs.camera_info.serial_number) for d in ctx.query_devices()]
            if not serials:
                raise DeviceNotConnectedError(f"{self.describe()}: no RealSense device found (plugged in? on USB 3?)")
            if self.serial is None and len(serials) > 1:
                raise ConfigError(f"{self.describe()}: {len(serials)} devices connected ({serials}); "
                                  f"set the serial number of this camera")
            if self.serial is not None and self.serial not in serials:
                raise DeviceNotConnectedError(f"{self.describe()}: not found; connected serials: {serials}")
            config.enable_device(self.serial or serials[0])
            config.enable_stream(rs.stream.color, self.width, self.height, rs.format.bgr8, int(self.fps))
            if self.depth:
                config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, int(self.fps))
        pipeline = rs.pipeline(ctx)
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            raise self._start_error(exc, ctx) from exc
        if self.bag_path is not None:
            playback = profile.get_device().as_playback()
            playback.set_real_time(self.real_time)
            vsp = profile.get_stream(rs.stream.color).as_video_stream_profile()
            if (vsp.width(), vsp.height()) != (self.width, self.height):
                log.warning("%s: recording is %dx%d, configured %dx%d; using the recording's size",
                            self.describe(), vsp.width(), vsp.height(), self.width, self.height)
                self.width, self.height = vsp.width(), vsp.height()
        self._pipeline = pipeline
        self._align = rs.align(rs.stream.color) if self.depth else None
        self.timestamps.reset()
        ok, first = pipeline.try_wait_for_frames(int(self.start_timeout_ms))
        self._first = first if ok else None  # returned by the next read(): playback keeps frame 0
        if not ok:
            self._disconnect()
            raise DeviceNotConnectedError(f"{self.describe()}: started but delivered no frame within "
                                          f"{self.start_timeout_ms:.0f} ms")

    def _start_error(self, exc: RuntimeError, ctx) -> Exception:
        """Turn librealsense's start failure into an error that says what to change."""
        rs = self._rs
        if self.bag_path is not None:
            return DeviceNotConnectedError(f"{self.describe()}: cannot play the recording: {exc}")
        modes = set()
        for dev in ctx.query_devices():
            if self.serial is not None and dev.get_info(rs.camera_info.serial_number) != self.serial:
                continue
            for sensor in dev.query_sensors():
                for p in sensor.get_stream_profiles():
                    if p.stream_type() == rs.stream.color and p.format() == rs.format.bgr8:
                        v = p.as_video_stream_profile()
                        modes.add((v.width(), v.height(), p.fps()))
        if modes and (self.width, self.height, int(self.fps)) not in modes:
            listed = ", ".join(f"{w}x{h}@{f}" for w, h, f in sorted(modes))
            return ConfigError(f"{self.describe()}: color mode {self.width}x{self.height}@{self.fps:g} bgr8 is not "
                               f"supported; the device offers: {listed}")
        return DeviceNotConnectedError(f"{self.describe()}: failed to start streaming: {exc}")

    # ------------------------------------------------------------------ read
    def _read(self, timeout_ms: float) -> Frame:
        rs = self._rs
        if self._first is not None:
            frames, self._first = self._first, None
            return self._convert(frames)
        try:
            ok, frames = self._pipeline.try_wait_for_frames(int(max(1, timeout_ms)))
        except RuntimeError as exc:  # librealsense raises when the device vanished mid-wait
            raise DeviceNotConnectedError(f"{self.describe()}: {exc}") from exc
        if not ok:
            if self.bag_path is not None:
                status = self._pipeline.get_active_profile().get_device().as_playback().current_status()
                if status == rs.playback_status.stopped:
                    raise DeviceNotConnectedError(f"{self.describe()}: reached the end of the recording")
            elif not self._device_present():
                raise DeviceNotConnectedError(f"{self.describe()}: device disappeared from the USB bus")
            raise CameraTimeoutError(f"{self.describe()}: no frame within {timeout_ms:.0f} ms")
        return self._convert(frames)

    def _convert(self, frames) -> Frame:
        arrival_mono, arrival_wall = self.clock.now(), time.time()
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise CameraTimeoutError(f"{self.describe()}: frameset without a color frame")
        image = self._to_bgr(color)
        depth = None
        if self.depth:
            d = frames.get_depth_frame()
            depth = np.array(d.get_data(), dtype=np.uint16, copy=True) if d else None
        device_ms = float(color.get_timestamp())
        domain = str(color.get_frame_timestamp_domain()).rsplit(".", 1)[-1]
        if self.bag_path is not None and not self.real_time:
            t_capture = arrival_mono  # fast playback compresses time: arrival is the only honest clock
        else:
            t_capture = self.timestamps.map(device_ms, domain, arrival_mono, arrival_wall)
        return Frame(image=image, t_capture=t_capture, index=int(color.get_frame_number()), camera=self.name,
                     depth=depth, info={"device_ms": device_ms, "domain": domain})

    def _to_bgr(self, color) -> np.ndarray:
        """A private BGR copy (librealsense recycles its buffers)."""
        rs = self._rs
        data = np.asanyarray(color.get_data())
        fmt = color.get_profile().format()
        if fmt == rs.format.bgr8:
            return np.array(data, dtype=np.uint8, copy=True)
        if fmt == rs.format.rgb8:
            return cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
        if fmt == rs.format.yuyv:
            return cv2.cvtColor(data, cv2.COLOR_YUV2BGR_YUYV)
        if fmt == rs.format.bgra8:
            return cv2.cvtColor(data, cv2.COLOR_BGRA2BGR)
        if fmt == rs.format.rgba8:
            return cv2.cvtColor(data, cv2.COLOR_RGBA2BGR)
        raise CameraTimeoutError(f"{self.describe()}: unsupported color format {fmt}")

    def _device_present(self) -> bool:
        rs = self._rs
        serials = [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]
        return bool(serials) if self.serial is None else self.serial in serials

    # ------------------------------------------------------------------ disconnect
    def _disconnect(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        self._first = None
        if pipeline is None:
            return
        try:
            pipeline.stop()
        except RuntimeError as exc:  # stopping a pipeline whose device vanished raises; nothing left to free
            log.debug("%s: pipeline.stop(): %s", self.describe(), exc)
