"""CameraWorker: counts what the camera does wrong, reconnects, and never blocks consumers.

The worker is a real thread. Synchronisation is by events and polling a condition (generous
timeouts only guard against hangs); fake clocks make the frame timing exact. No wall-clock asserts.
"""

import threading

import numpy as np
import pytest

from runtime.cameras.base import Camera, CameraTimeoutError, Frame
from runtime.cameras.synthetic import SyntheticFaults, make_synthetic_cameras
from runtime.cameras.worker import CameraWorker
from runtime.clock import FakeClock
from runtime.errors import DeviceNotConnectedError, StaleDataError
from runtime.mailbox import Mailbox

IMG = np.zeros((4, 6, 3), np.uint8)


class ScriptedCamera(Camera):
    """Delivers a scripted list of (index, t_capture) frames, then raises the scripted errors."""

    def __init__(self, script, clock):
        super().__init__("scripted", 6, 4, 30.0, clock)
        self.script = list(script)
        self.done = threading.Event()

    def _connect(self):
        pass

    def _disconnect(self):
        pass

    def _read(self, timeout_ms):
        if not self.script:
            self.done.set()
            raise CameraTimeoutError("script finished")
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        index, t = item
        return Frame(IMG, t, index, self.name)


def test_worker_classifies_drops_duplicates_out_of_order_and_late_frames():
    clock = FakeClock(10.0)
    script = [(0, 9.99), (1, 9.995), (1, 9.995), (4, 10.0), (3, 9.998), (5, 10.0), (6, 9.5), (7, 10.01)]
    cam = ScriptedCamera(script, clock)
    published = []
    worker = CameraWorker(cam, on_frame=lambda f: published.append(f.index), late_after_s=0.1,
                          reconnect_after_stalls=1000)
    with worker:
        assert cam.done.wait(10)
    s = worker.stats()
    assert published == [0, 1, 4, 7]
    assert s["frames"] == 4
    assert s["duplicates"] == 2  # same index; then index 5 with the timestamp of index 4
    assert s["out_of_order"] == 2  # 3 after 4, and 6 with an older timestamp
    assert s["dropped"] == 2 + 2  # 2,3 missing before 4; 5,6 never published before 7
    assert s["late"] == 0
    assert worker.mailbox.latest().value.index == 7


def test_worker_counts_synthetic_drops_exactly():
    clock = FakeClock()
    _, head, _ = make_synthetic_cameras(clock=clock, head_faults=SyntheticFaults(drop_every=4, late_every=5, late_by_s=0.02))
    reached = threading.Event()
    worker = CameraWorker(head, on_frame=lambda f: f.index >= 40 and reached.set(), late_after_s=0.01)
    worker.start()
    assert reached.wait(10)
    worker.stop()
    last = worker.mailbox.latest().value.index
    s = worker.stats()
    assert s["dropped"] == len([k for k in range(last) if k % 4 == 3])
    assert s["frames"] == last + 1 - s["dropped"]
    assert s["late"] == len([k for k in range(1, last + 1) if k % 5 == 0 and k % 4 != 3])
    assert s["stalls"] == 0 and s["errors"] == 0
    assert not head.is_connected  # stop() releases the device


def test_worker_reconnects_with_backoff_after_unplug(wait_until):
    clock = FakeClock()
    _, head, _ = make_synthetic_cameras(clock=clock)
    unplugged = threading.Event()

    def on_frame(frame):
        if frame.index == 10 and not unplugged.is_set():
            head.unplug()
            unplugged.set()

    worker = CameraWorker(head, on_frame=on_frame, backoff_initial_s=0.001, backoff_max_s=0.004)
    with worker:
        assert wait_until(lambda: worker.stats()["connect_failures"] >= 3)
        s = worker.stats()
        assert s["disconnects"] == 1 and s["reconnects"] == 0 and not s["connected"]
        assert "unplugged" in s["last_error"]
        frames_while_unplugged = s["frames"]
        head.replug()
        assert wait_until(lambda: worker.stats()["frames"] > frames_while_unplugged + 5)
    s = worker.stats()
    assert s["reconnects"] == 1
    assert frames_while_unplugged == 11


def test_worker_counts_stalls_and_reopens_after_consecutive_stalls(wait_until):
    clock = FakeClock()
    _, head, _ = make_synthetic_cameras(clock=clock)
    stalled = threading.Event()

    def on_frame(frame):
        if frame.index == 3 and not stalled.is_set():
            head.stall(1.0)  # fake time: each 100 ms read timeout advances the clock 100 ms
            stalled.set()

    worker = CameraWorker(head, on_frame=on_frame, read_timeout_ms=100, reconnect_after_stalls=4,
                          backoff_initial_s=0.001)
    with worker:
        assert wait_until(lambda: worker.mailbox.peek() is not None and worker.mailbox.peek().value.index > 40)
    s = worker.stats()
    assert 9 <= s["stalls"] <= 10
    assert s["reconnects"] == 2  # reopened after the 4th and 8th consecutive stall
    assert s["dropped"] >= 29  # the frames of the 1 s stall never existed


class BlockingCamera(Camera):
    """Blocks inside read() until released: a camera hung in its driver."""

    def __init__(self, clock):
        super().__init__("hung", 6, 4, 30.0, clock)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.n = 0

    def _connect(self):
        pass

    def _disconnect(self):
        pass

    def _read(self, timeout_ms):
        if self.n > 0:
            self.entered.set()
            if not self.release.wait(timeout_ms / 1e3):
                raise CameraTimeoutError(f"hung camera: no frame within {timeout_ms} ms")
        self.n += 1
        return Frame(IMG, self.clock.now(), self.n, self.name)


def test_consumer_is_never_blocked_by_a_hung_camera():
    clock = FakeClock()
    cam = BlockingCamera(clock)
    frames: Mailbox[Frame] = Mailbox("head", clock)
    worker = CameraWorker(cam, frames, read_timeout_ms=60_000)
    worker.start()
    try:
        assert cam.entered.wait(10)  # the worker is now stuck inside read()
        first = frames.peek()
        assert first is not None and first.value.index == 1
        assert frames.latest(max_age_s=0.1).value.index == 1  # fresh in fake time
        clock.advance(0.2)
        with pytest.raises(StaleDataError, match="200.0 ms old"):
            frames.latest(max_age_s=0.1)  # the consumer sees staleness at once and can hold
        assert cam.read_latest(max_age_ms=500).index == 1
        with pytest.raises(StaleDataError):
            cam.read_latest(max_age_ms=100)
    finally:
        cam.release.set()
        assert worker.stop(timeout_s=10)


def test_stop_is_prompt_during_backoff_and_reports_connect_errors(wait_until, caplog):
    class DeadCamera(ScriptedCamera):
        def _connect(self):
            raise DeviceNotConnectedError("RealSense 'third' (serial 123): no device with this serial")

    cam = DeadCamera([], FakeClock())
    worker = CameraWorker(cam, backoff_initial_s=0.001, backoff_max_s=30.0)
    worker.start()
    assert wait_until(lambda: worker.stats()["connect_failures"] >= 5)
    assert worker.stop(timeout_s=10)  # would take ~30 s if the backoff slept instead of waiting on the event
    assert "serial 123" in worker.stats()["last_error"]
    assert worker.stats()["frames"] == 0
    warnings = [r for r in caplog.records if "cannot open the camera" in r.getMessage()]
    assert len(warnings) == 1 and "serial 123" in warnings[0].getMessage()  # once per cause, not per retry


def test_worker_rejects_bad_settings():
    cam = ScriptedCamera([], FakeClock())
    with pytest.raises(ValueError, match="reconnect_after_stalls"):
        CameraWorker(cam, reconnect_after_stalls=0)
    with pytest.raises(ValueError, match="backoff"):
        CameraWorker(cam, backoff_initial_s=1.0, backoff_max_s=0.5)
