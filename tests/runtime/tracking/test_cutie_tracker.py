"""CutieTracker behaviour: clear states and errors for bad input, torch-free runtime, re-init, lost target."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("cutie", reason="building the random-weight export needs rf-cutie (export extra)")

from runtime.errors import ModelError, ObservationError  # noqa: E402
from runtime.tracking.base import Tracker  # noqa: E402
from runtime.tracking.cutie import CutieTracker  # noqa: E402
from runtime.tracking.learned.synthetic import moving_object_video  # noqa: E402
from tests.export.tracker.tracker_fixtures import ReferenceCutie, iou  # noqa: E402

H, W = 128, 160  # the size of the session's small_cutie_export (conftest.py)


@pytest.fixture(scope="module")
def small_export(small_cutie_export):
    return small_cutie_export  # shared with the precision tests (one export per session)


@pytest.fixture()
def video():
    return moving_object_video(6, height=H, width=W, radius_px=(22, 16), step_px=(3.0, 1.0))


def test_is_a_tracker(small_export):
    assert isinstance(CutieTracker(small_export), Tracker)


def test_track_before_init_raises(small_export, video):
    with pytest.raises(RuntimeError, match="before init"):
        CutieTracker(small_export).track(video[0][0])


@pytest.mark.parametrize("bad_shape", [(H, W + 16, 3), (H - 1, W, 3), (H, W, 4), (H, W)])
def test_frames_of_unexpected_size_raise_observation_error(small_export, video, bad_shape):
    tracker = CutieTracker(small_export)
    bad = np.zeros(bad_shape, np.uint8)
    with pytest.raises(ObservationError):
        tracker.init(bad, mask=np.ones(bad_shape[:2], np.uint8))
    frames, masks = video
    tracker.init(frames[0], mask=masks[0])
    with pytest.raises(ObservationError, match="frame"):
        tracker.track(bad)
    # the tracker is still usable after the rejected frame
    assert tracker.track(frames[1]).mask.shape == (H, W)


def test_float_frames_and_bad_masks_are_rejected(small_export, video):
    frames, masks = video
    tracker = CutieTracker(small_export)
    with pytest.raises(ObservationError, match="uint8"):
        tracker.init(frames[0].astype(np.float32), mask=masks[0])
    with pytest.raises(ObservationError, match="0 and 1"):
        tracker.init(frames[0], mask=masks[0] * 7)
    with pytest.raises(ObservationError, match="shape"):
        tracker.init(frames[0], mask=masks[0][:-1])


def test_empty_initial_mask_gives_a_lost_state_not_a_crash(small_export, video):
    frames, masks = video
    tracker = CutieTracker(small_export)
    result = tracker.init(frames[0], mask=np.zeros((H, W), np.uint8))
    assert result.lost and result.mask.sum() == 0 and tracker.state == "no_target"
    follow = tracker.track(frames[1])
    assert follow.lost and follow.mask.sum() == 0 and "no target" in follow.info["reason"]
    # a real mask afterwards recovers
    again = tracker.init(frames[2], mask=masks[2])
    assert not again.lost and tracker.state == "tracking" and iou(again.mask, masks[2]) == 1.0


def test_box_init_without_sam_in_the_export_is_a_clear_error(small_export, video):
    with pytest.raises(ModelError, match="no SAM"):
        CutieTracker(small_export).init(video[0][0], box_xyxy=[10, 10, 50, 40])


def test_object_leaving_the_frame_is_reported_as_lost_exactly_when_the_mask_empties(small_export):
    """The object drives out of the image; lost follows the (reference-matching) mask, no crash."""
    frames, masks = moving_object_video(14, height=H, width=W, radius_px=(20, 14), step_px=(14.0, 0.0),
                                        start_xy=(70.0, 60.0))
    assert masks[-1].sum() == 0  # the object really left
    ours, ref = CutieTracker(small_export), ReferenceCutie(small_export)
    for i, frame in enumerate(frames):
        result = ours.init(frame, mask=masks[0]) if i == 0 else ours.track(frame)
        ref_prob, ref_mask = ref.init(frame, masks[0]) if i == 0 else ref.step(frame)
        assert np.abs(result.prob - ref_prob).max() <= 1e-3
        assert result.lost == (ref_mask.sum() == 0)
        assert result.lost == (result.mask.sum() == 0)
        if result.lost:
            assert "reason" in result.info


def test_min_area_marks_small_masks_lost(small_export, video):
    frames, masks = video
    tracker = CutieTracker(small_export, min_area_px=H * W + 1)
    assert tracker.init(frames[0], mask=masks[0]).lost
    result = tracker.track(frames[1])
    assert result.lost and "reason" in result.info


def test_reset_requires_a_new_init(small_export, video):
    frames, masks = video
    tracker = CutieTracker(small_export)
    tracker.init(frames[0], mask=masks[0])
    tracker.reset()
    with pytest.raises(RuntimeError):
        tracker.track(frames[1])


def test_tampered_graph_is_refused(small_export, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_export, copy)
    with open(copy / "cutie_segment.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        CutieTracker(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        CutieTracker(copy)
    with pytest.raises(ModelError, match="manifest.json is missing"):
        CutieTracker(tmp_path)


def test_runtime_tracker_never_imports_torch(small_export, video):
    frames, masks = video
    np.save(small_export.parent / "frames.npy", np.stack(frames[:3]))
    np.save(small_export.parent / "mask0.npy", masks[0])
    code = (
        "import sys, json, numpy as np\n"
        "from runtime.tracking.cutie import CutieTracker\n"
        f"frames = np.load({str(small_export.parent / 'frames.npy')!r})\n"
        f"mask = np.load({str(small_export.parent / 'mask0.npy')!r})\n"
        f"t = CutieTracker({str(small_export)!r})\n"
        "r = t.init(frames[0], mask=mask)\n"
        "for f in frames[1:]: r = t.track(f)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'area': int(r.mask.sum())}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["torch"] is False
