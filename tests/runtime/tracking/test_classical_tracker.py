"""The classical tracker against the synthetic scene's ground-truth masks.

IoU is measured against the visible pixels of the object as rendered (occlusion by the arm
included), over sequences of >= 30 frames in which the arm sweeps across the table, an object
slides, is carried by the hand, leaves the frame or jumps.
"""

import numpy as np
import pytest

from runtime.cameras.scene import DEFAULT_OBJECTS, default_state, mask_box
from runtime.cameras.synthetic import ground_truth_mask, make_synthetic_cameras
from runtime.clock import FakeClock
from runtime.errors import ObservationError
from runtime.tracking.base import Tracker
from runtime.tracking.classical import ClassicalTracker, ClassicalTrackerConfig


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


class Rig:
    """A head camera on a scripted scene, and a box around an object's ground truth."""

    def __init__(self, noise_std=2.0):
        self.q = default_state()
        self.scene, self.head, _ = make_synthetic_cameras(lambda: self.q, clock=FakeClock(), noise_std=noise_std,
                                                          ground_truth=True)
        self.k = 0

    def frame(self):
        f = self.head.render_frame(self.k, self.k / 30)
        self.k += 1
        return f

    @staticmethod
    def box(frame, name, pad=4):
        return mask_box(ground_truth_mask(frame, name)) + np.array([-pad, -pad, pad, pad])

    def sweep_arm(self, k):
        q0 = default_state()
        self.q[0] = q0[0] + 0.4 * np.sin(k / 10)
        self.q[3] = q0[3] - 0.25 * np.sin(k / 7)


def test_is_a_tracker():
    assert isinstance(ClassicalTracker(), Tracker)


@pytest.mark.parametrize("init_method", ["grabcut", "color"])
@pytest.mark.parametrize("name", [o.name for o in DEFAULT_OBJECTS])
def test_tracks_each_object_while_the_arm_sweeps_and_occludes(name, init_method):
    rig = Rig()
    tracker = ClassicalTracker(ClassicalTrackerConfig(init_method=init_method))
    f = rig.frame()
    full_area = ground_truth_mask(f, name).sum()
    res = tracker.init(f.image, rig.box(f, name))
    assert not res.lost and iou(res.mask, ground_truth_mask(f, name)) > 0.9
    ious, occluded = [], 0
    for k in range(1, 46):
        rig.sweep_arm(k)
        if name == "red cube":  # one object also slides while the arm passes over it
            rig.scene.place(name, -0.16 + 0.004 * k, 0.32 + 0.002 * k)
        f = rig.frame()
        res = tracker.track(f.image)
        assert res.mask.shape == (480, 640) and res.mask.dtype == np.uint8 and res.mask.max() <= 1
        truth = ground_truth_mask(f, name)
        ious.append(iou(res.mask, truth))
        if truth.sum() >= 0.5 * full_area:
            assert not res.lost, f"frame {k}: lost although {truth.sum() / full_area:.0%} visible"
            assert ious[-1] > 0.85, f"frame {k}: IoU {ious[-1]:.2f}"
        else:
            occluded += 1
    assert np.mean(ious) > 0.9
    if name in ("red cube", "green ball"):
        assert occluded >= 2  # the sequence really contains heavy occlusion for these two


def test_tracks_an_object_carried_by_the_hand():
    rig = Rig()
    rig.q[3] -= 0.3  # lower the hand to grasp height
    wrist = rig.scene.snapshot().arm[2]
    rig.scene.place("blue cube", wrist[0], wrist[1] + 0.02)
    f = rig.frame()
    start_box = rig.box(f, "blue cube", 0)
    tracker = ClassicalTracker()
    tracker.init(f.image, rig.box(f, "blue cube"))
    rig.q[7:] = 0.0  # close the hand: the cube follows it from now on
    ious = []
    for k in range(1, 36):
        rig.q[0] = default_state()[0] + 0.5 * np.sin(k / 8)
        rig.q[1] = default_state()[1] + 0.15 * np.sin(k / 11)
        f = rig.frame()
        res = tracker.track(f.image)
        ious.append(iou(res.mask, ground_truth_mask(f, "blue cube")))
    assert rig.scene.held == "blue cube"
    moved_px = np.abs(rig.box(f, "blue cube", 0) - start_box).max()
    assert moved_px > 40  # the hand really carried it across the image
    assert np.mean(ious) > 0.8 and np.min(ious) > 0.5


def test_reinit_with_a_new_box_switches_the_target():
    rig = Rig()
    tracker = ClassicalTracker()
    f = rig.frame()
    tracker.init(f.image, rig.box(f, "red cube"))
    for _ in range(5):
        f = rig.frame()
        tracker.track(f.image)
    res = tracker.init(f.image, rig.box(f, "yellow cylinder"))
    assert iou(res.mask, ground_truth_mask(f, "yellow cylinder")) > 0.9
    for _ in range(5):
        f = rig.frame()
        res = tracker.track(f.image)
    assert iou(res.mask, ground_truth_mask(f, "yellow cylinder")) > 0.9
    assert not np.logical_and(res.mask, ground_truth_mask(f, "red cube")).any()


def test_object_leaving_the_frame_is_reported_lost():
    rig = Rig()
    tracker = ClassicalTracker(ClassicalTrackerConfig(redetect=False))
    f = rig.frame()
    tracker.init(f.image, rig.box(f, "red cube"))
    states = []
    for k in range(1, 60):
        rig.scene.place("red cube", -0.16 - 0.012 * k, 0.32)  # slides off the left edge
        f = rig.frame()
        res = tracker.track(f.image)
        visible = ground_truth_mask(f, "red cube").sum()
        states.append((visible, res.lost, res.info.get("reason")))
    first_gone = next(i for i, s in enumerate(states) if s[0] == 0)
    assert all(not lost for vis, lost, _ in states if vis > 0.5 * states[0][0])
    assert all(lost and reason == "left_frame" for _, lost, reason in states[first_gone:])
    assert tracker.track(f.image).mask.sum() == 0


def test_redetects_an_object_that_jumped_elsewhere():
    rig = Rig()
    tracker = ClassicalTracker()
    f = rig.frame()
    tracker.init(f.image, rig.box(f, "green ball"))
    rig.scene.place("green ball", -0.30, 0.10)  # far outside the search window
    f = rig.frame()
    res = tracker.track(f.image)
    assert not res.lost and res.info["reason"] == "redetected"
    assert iou(res.mask, ground_truth_mask(f, "green ball")) > 0.9

    no_redetect = ClassicalTracker(ClassicalTrackerConfig(redetect=False))
    rig.scene.place("green ball", 0.06, 0.46)
    f = rig.frame()
    no_redetect.init(f.image, rig.box(f, "green ball"))
    rig.scene.place("green ball", -0.30, 0.10)
    assert no_redetect.track(rig.frame().image).lost


def test_init_from_a_mask_and_empty_masks():
    rig = Rig()
    f = rig.frame()
    truth = ground_truth_mask(f, "yellow cylinder")
    tracker = ClassicalTracker()
    res = tracker.init(f.image, mask=truth)
    assert np.array_equal(res.mask, truth) and not res.lost
    res = tracker.init(f.image, mask=np.zeros((480, 640), np.uint8))
    assert res.lost and res.mask.sum() == 0 and res.info["reason"] == "empty_init"
    follow = tracker.track(rig.frame().image)  # stays lost, does not raise, until the next init
    assert follow.lost and follow.mask.sum() == 0


def test_bad_frames_boxes_and_order_raise_clear_errors():
    rig = Rig()
    f = rig.frame()
    tracker = ClassicalTracker()
    with pytest.raises(RuntimeError, match="before init"):
        tracker.track(f.image)
    for bad_box, what in [([np.nan, 0, 10, 10], "finite"), ([50, 50, 40, 60], "reversed"),
                          ([700, 10, 800, 50], "outside"), ([1, 2, 3], "4 finite")]:
        with pytest.raises(ObservationError, match=what):
            tracker.init(f.image, bad_box)
    with pytest.raises(ObservationError, match="neither"):
        tracker.init(f.image)
    with pytest.raises(ObservationError, match="mask"):
        tracker.init(f.image, mask=np.ones((10, 10)))
    tracker.init(f.image, rig.box(f, "red cube"))
    with pytest.raises(ObservationError, match="320x240.*640x480"):
        tracker.track(f.image[::2, ::2])
    with pytest.raises(ObservationError, match="uint8"):
        tracker.track(f.image.astype(np.float32))
    with pytest.raises(ObservationError, match="HxWx3"):
        tracker.track(f.image[..., 0])
    res = tracker.track(rig.frame().image)  # still tracking after the rejected frames
    assert iou(res.mask, ground_truth_mask(f, "red cube")) > 0.9
    tracker.reset()
    with pytest.raises(RuntimeError):
        tracker.track(f.image)


def test_config_validation():
    with pytest.raises(ValueError, match="init_method"):
        ClassicalTrackerConfig(init_method="sam")
    with pytest.raises(ValueError, match="prob_threshold"):
        ClassicalTrackerConfig(prob_threshold=0)


@pytest.mark.parametrize("pad_px", [-3, 30])
def test_imprecise_planner_boxes_still_give_the_whole_object(pad_px):
    """A box cutting into the object (-3 px) or far too loose (+30 px), with strong noise."""
    rig = Rig(noise_std=6.0)
    tracker = ClassicalTracker()
    f = rig.frame()
    res = tracker.init(f.image, rig.box(f, "yellow cylinder", pad_px))
    assert iou(res.mask, ground_truth_mask(f, "yellow cylinder")) > 0.7
    for k in range(1, 6):
        rig.sweep_arm(k)
        f = rig.frame()
        res = tracker.track(f.image)
    assert iou(res.mask, ground_truth_mask(f, "yellow cylinder")) > 0.95 and not res.lost
