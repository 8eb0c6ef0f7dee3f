"""Cameras behind one interface (`base.Camera`): RealSense / `.bag` playback (`realsense`), the
synthetic tabletop scene for the embedded default (`synthetic`, `scene`), and the capture thread
(`worker.CameraWorker`) that publishes frames into a `runtime.mailbox.Mailbox`."""

from runtime.cameras.base import Camera, CameraTimeoutError, Frame
from runtime.cameras.worker import CameraWorker

__all__ = ["Camera", "CameraTimeoutError", "CameraWorker", "Frame"]
