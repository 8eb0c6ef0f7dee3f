"""Synthetic cameras: the Camera interface contract, fault injection and the scene's behaviour.

All timing runs on a FakeClock: `read()` advances fake time instead of sleeping, so every
assertion about timestamps and timeouts is exact.
"""

import cv2
import numpy as np
import pytest

from runtime.cameras.base import CameraTimeoutError
from runtime.cameras.scene import DEFAULT_OBJECTS, default_state, mask_box
from runtime.cameras.synthetic import (
    SyntheticCamera,
    SyntheticFaults,
    ground_truth_mask,
    make_synthetic_cameras,
)
from runtime.clock import FakeClock
from runtime.errors import DeviceNotConnectedError, StaleDataError


def _pair(**kw):
    clock = FakeClock(100.0)
    scene, head, wrist = make_synthetic_cameras(clock=clock, **kw)
    return clock, scene, head, wrist


def test_frames_are_bgr_640x480_with_monotonic_timestamps_at_fps():
    clock, _, head, wrist = _pair()
    with head, wrist:
        frames = [head.read(timeout_ms=100) for _ in range(10)]
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == list(range(10))
    assert [f.camera for f in frames[:1]] == ["third"] and wrist.name == "right_first"
    dt = np.diff([f.t_capture for f in frames])
    np.testing.assert_allclose(dt, 1 / 30, rtol=1e-9)
    assert frames[0].t_capture == 100.0
    assert clock.now() == pytest.approx(100.0 + 9 / 30)  # read() blocked (in fake time) until each frame


def test_read_latest_never_blocks_and_raises_when_stale():
    clock, _, head, _ = _pair()
    with pytest.raises(DeviceNotConnectedError, match="third.*not connected"):
        head.read_latest()
    head.connect()
    with pytest.raises(StaleDataError, match="no value"):
        head.read_latest(max_age_ms=50)
    frame = head.read()
    assert head.read_latest(max_age_ms=50) is frame
    clock.advance(0.049)
    assert head.read_latest(max_age_ms=50) is frame
    clock.advance(0.002)
    with pytest.raises(StaleDataError, match=r"51\.0 ms old.*max 50\.0 ms"):
        head.read_latest(max_age_ms=50)
    head.disconnect()
    with pytest.raises(DeviceNotConnectedError):
        head.read(timeout_ms=10)


def test_slow_reader_skips_frames_like_a_device_buffer():
    clock, _, head, _ = _pair()
    with head:
        assert head.read().index == 0
        clock.advance(0.2)  # 6 frame periods pass unread
        nxt = head.read()
    assert nxt.index == 6 and nxt.t_capture == pytest.approx(100.2)


def test_drop_and_duplicate_faults():
    clock, _, head, _ = _pair(head_faults=SyntheticFaults(drop_every=4, duplicate_every=5))
    with head:
        frames = [head.read() for _ in range(12)]
    indices = [f.index for f in frames]
    assert all(i % 4 != 3 for i in indices)
    assert indices == [0, 1, 2, 4, 5, 5, 6, 8, 9, 10, 10, 12]
    dup = [i for i in range(1, len(frames)) if frames[i].index == frames[i - 1].index]
    assert all(frames[i] is frames[i - 1] for i in dup)


def test_stall_times_out_after_exactly_the_timeout_then_recovers():
    clock, _, head, _ = _pair()
    with head:
        head.read()
        head.stall(0.25)
        t0 = clock.now()
        with pytest.raises(CameraTimeoutError, match="third.*no frame within 100 ms"):
            head.read(timeout_ms=100)
        assert clock.now() == pytest.approx(t0 + 0.1)
        with pytest.raises(CameraTimeoutError):
            head.read(timeout_ms=100)
        frame = head.read(timeout_ms=100)
    assert frame.t_capture >= t0 + 0.25 - 1e-9


def test_late_delivery_keeps_the_capture_time():
    clock, _, head, _ = _pair(head_faults=SyntheticFaults(late_every=3, late_by_s=0.05))
    with head:
        frames = [head.read() for _ in range(4)]
        assert frames[3].index == 3
        assert clock.now() - frames[3].t_capture == pytest.approx(0.05)


def test_unplug_raises_naming_the_device_and_reconnect_needs_replug():
    clock, _, head, _ = _pair()
    head.connect()
    head.read()
    head.unplug()
    with pytest.raises(DeviceNotConnectedError, match="synthetic camera 'third'.*unplugged"):
        head.read()
    assert not head.is_connected
    with pytest.raises(DeviceNotConnectedError, match="not found"):
        head.connect()
    head.replug()
    head.connect()
    clock.advance(1.0)
    assert head.read().index == 30  # continues with the frame due now (t = 1 s after start)


def test_scheduled_unplug_window():
    clock, _, head, _ = _pair(head_faults=SyntheticFaults(unplug_at_s=0.1, unplug_for_s=0.2))
    head.connect()
    head.read()
    clock.advance(0.15)
    with pytest.raises(DeviceNotConnectedError):
        head.read()
    clock.advance(0.2)
    head.connect()
    assert head.read().t_capture >= 100.3


def test_bad_config_is_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="drop_every"):
        SyntheticFaults(drop_every=1)
    with pytest.raises(ValueError, match="view"):
        SyntheticCamera("x", make_synthetic_cameras()[0], view="top")
    with pytest.raises(ValueError, match="fps"):
        SyntheticCamera("x", make_synthetic_cameras()[0], fps=0)


def test_rendering_is_deterministic_under_a_seed_and_noise_changes_with_it():
    a = make_synthetic_cameras(clock=FakeClock(), seed=3, noise_std=3.0)[1]
    b = make_synthetic_cameras(clock=FakeClock(), seed=3, noise_std=3.0)[1]
    c = make_synthetic_cameras(clock=FakeClock(), seed=4, noise_std=3.0)[1]
    fa, fb, fc = (cam.render_frame(5, 0.0).image for cam in (a, b, c))
    assert np.array_equal(fa, fb)
    assert not np.array_equal(fa, fc)
    assert np.abs(fa.astype(int) - fc.astype(int)).mean() < 6  # only the noise differs


def test_arm_pose_follows_the_robot_state_in_both_views():
    q = default_state()
    _, head, wrist = make_synthetic_cameras(lambda: q, clock=FakeClock(), noise_std=0.0)
    h0, w0 = head.render_frame(0, 0).image, wrist.render_frame(0, 0).image
    q[0] += 0.3  # base yaw
    h1, w1 = head.render_frame(1, 0).image, wrist.render_frame(1, 0).image
    assert (np.abs(h0.astype(int) - h1.astype(int)).sum(axis=2) > 30).mean() > 0.005
    assert (np.abs(w0.astype(int) - w1.astype(int)).sum(axis=2) > 30).mean() > 0.05


def test_bad_state_is_ignored_and_counted():
    state = [default_state()]
    scene, head, _, = make_synthetic_cameras(lambda: state[0], clock=FakeClock(), noise_std=0.0)[:3]
    good = head.render_frame(0, 0).image
    state[0] = np.full(13, np.nan)
    assert np.array_equal(head.render_frame(1, 0).image, good)
    state[0] = np.zeros(5)
    head.render_frame(2, 0)
    assert scene.bad_states == 2


def test_closed_hand_grasps_the_object_under_it_and_it_follows():
    q = default_state()
    scene, head, _ = make_synthetic_cameras(lambda: q, clock=FakeClock(), noise_std=0.0, ground_truth=True)
    q[3] -= 0.3  # elbow down: the hand comes down to about 0.10 m over the table
    wrist_xy = scene.snapshot().arm[2][:2]
    scene.place("green ball", *wrist_xy)
    q[7:] = 0.0  # close the hand
    head.render_frame(1, 0)
    assert scene.held == "green ball"
    before = scene.object("green ball")
    q[0] += 0.2
    after_frame = head.render_frame(2, 0)
    after = scene.object("green ball")
    assert np.hypot(after.x - before.x, after.y - before.y) > 0.05
    assert ground_truth_mask(after_frame, "green ball").sum() > 0
    q[7:] = 1.0  # open: the ball drops onto the table where it is
    head.render_frame(3, 0)
    assert scene.held is None and scene.object("green ball").z == 0.0


def test_palette_colours_are_groundable_from_the_image():
    """The documented palette lets a planner find 'red cube' etc. with an HSV threshold alone."""
    _, head, _ = make_synthetic_cameras(clock=FakeClock(), noise_std=2.0, ground_truth=True)
    frame = head.render_frame(0, 0.0)
    hsv = cv2.cvtColor(frame.image, cv2.COLOR_BGR2HSV)
    for obj in DEFAULT_OBJECTS:
        hue = int(cv2.cvtColor(np.uint8([[obj.bgr]]), cv2.COLOR_BGR2HSV)[0, 0, 0])
        lo, hi = (hue - 6) % 180, (hue + 6) % 180
        h = hsv[..., 0].astype(int)
        in_hue = (h >= lo) & (h <= hi) if lo < hi else (h >= lo) | (h <= hi)
        found = (in_hue & (hsv[..., 1] > 120)).astype(np.uint8)
        truth = ground_truth_mask(frame, obj.name)
        box_found, box_truth = mask_box(found), mask_box(truth)
        assert box_found is not None, obj.name
        np.testing.assert_allclose(box_found, box_truth, atol=2, err_msg=obj.name)
