"""Exported Cutie (ONNX Runtime, numpy memory) vs PyTorch InferenceCore, as upstream drives it.

Random weights at the package's own architecture (small config), 640x480 full resolution like
upstream (max_internal_size=-1), 32 frames of a textured object moving across a textured table.
Per frame: foreground probability max abs error <= 1e-3 and binary-mask IoU >= 0.99.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cutie", reason="the export extra's rf-cutie package is needed for the reference")

from runtime.tracking.cutie import CutieTracker  # noqa: E402
from runtime.tracking.learned.synthetic import moving_object_video  # noqa: E402
from tests.export.tracker.tracker_fixtures import ReferenceCutie, export_random_tracker, iou  # noqa: E402

N_FRAMES = 32


@pytest.fixture(scope="module")
def exported_640(tmp_path_factory):
    # Two objects: with random weights a lone target's prob is > 0.5 almost everywhere, so the
    # non-degenerate-mask checks below need the background competing as object 0.
    return export_random_tracker(tmp_path_factory.mktemp("cutie640"), 480, 640, objects="target-and-background")


def run_both(export_dir, frames, masks, reinit_at=()):
    ours = CutieTracker(export_dir)
    ref = ReferenceCutie(export_dir, objects=tuple(ours.settings.object_ids))
    rows = []
    for i, frame in enumerate(frames):
        if i == 0 or i in reinit_at:
            result = ours.init(frame, mask=masks[i])
            ref_prob, ref_mask = ref.init(frame, masks[i])
        else:
            result = ours.track(frame)
            ref_prob, ref_mask = ref.step(frame)
        rows.append((float(np.abs(result.prob - ref_prob).max()), iou(result.mask, ref_mask),
                     ref_mask.mean(), ref_prob, result))
    return rows


def test_cutie_matches_inference_core_over_a_moving_object(exported_640):
    frames, masks = moving_object_video(N_FRAMES)
    rows = run_both(exported_640, frames, masks)
    errors = [r[0] for r in rows]
    ious = [r[1] for r in rows]
    # the comparison means something: the reference mask is neither empty nor everything, and the
    # probabilities are not one constant
    fractions = [r[2] for r in rows[1:]]
    assert 0.01 < float(np.median(fractions)) < 0.99, fractions
    assert all(float(r[3].max() - r[3].min()) > 0.05 for r in rows[1:])
    # memory frames were written (every 5th frame) and the FIFO wrapped around
    assert rows[-1][4].info["ti"] == N_FRAMES - 1
    assert sum(r[4].info.get("memory_frame", False) for r in rows) == (N_FRAMES - 1) // 5
    assert max(errors) <= 1e-3, f"max abs error per frame: {[f'{e:.1e}' for e in errors]}"
    assert min(ious) >= 0.99, f"IoU per frame: {[f'{v:.4f}' for v in ious]}"


def test_reinitialising_mid_episode_matches_upstream_clear_memory(exported_640):
    """A new box mid-episode: upstream clears Cutie's memory and steps with the new mask."""
    frames, masks = moving_object_video(10, seed=3)
    rows = run_both(exported_640, frames, masks, reinit_at=(6,))
    assert rows[6][4].info["state"] == "tracking" and "ti" not in rows[6][4].info
    assert max(r[0] for r in rows) <= 1e-3
    assert min(r[1] for r in rows) >= 0.99
    assert iou(rows[6][4].mask, masks[6]) == 1.0  # the init frame returns the given mask


def test_frames_not_a_multiple_of_16_are_padded_like_cutie(tmp_path):
    """Cutie pads to multiples of 16 (pad_divide_by); the runtime pads and unpads the same way."""
    export_dir = export_random_tracker(tmp_path / "odd", 120, 150)
    frames, masks = moving_object_video(7, height=120, width=150, radius_px=(25, 18), step_px=(3.0, 1.5))
    rows = run_both(export_dir, frames, masks)
    assert rows[0][4].mask.shape == (120, 150)
    assert max(r[0] for r in rows) <= 1e-3
    assert min(r[1] for r in rows) >= 0.99


def test_with_background_export_matches_inference_core_with_two_objects(tmp_path):
    """--objects target-and-background (not upstream): Cutie tracks ids [0, 1], background included."""
    export_dir = export_random_tracker(tmp_path / "bg", 128, 160, objects="target-and-background")
    frames, masks = moving_object_video(8, height=128, width=160, radius_px=(22, 16), step_px=(3.0, 1.0))
    ours, ref = CutieTracker(export_dir), ReferenceCutie(export_dir, objects=(0, 1))
    assert ours.settings.object_ids == [0, 1]
    for i, frame in enumerate(frames):
        result = ours.init(frame, mask=masks[0]) if i == 0 else ours.track(frame)
        ref_prob, ref_mask = ref.init(frame, masks[0]) if i == 0 else ref.step(frame)
        assert np.abs(result.prob - ref_prob).max() <= 1e-3
        assert iou(result.mask, ref_mask) >= 0.99


def test_top_k_weights_are_upstreams_where_exp_underflows():
    """Cutie's do_softmax takes exp() without subtracting the max: below ~-87 it is a denormal."""
    import torch
    from cutie.model.utils.memory_utils import do_softmax

    from export.tracker.cutie_graphs import upstream_top_k_softmax

    values = -torch.rand(1, 64, 30) * 3 + torch.linspace(-80, -103, 64)[None, :, None]
    values = values.sort(dim=2, descending=True).values
    ref = do_softmax(values.transpose(1, 2).clone(), top_k=30).transpose(1, 2)  # B x N x HW there
    ref = ref.gather(2, torch.arange(30).expand(1, 64, 30))
    assert torch.isfinite(ref).all()
    assert float((upstream_top_k_softmax(values) - ref).abs().max()) <= 1e-6
    # where upstream's sum is 0 (0/0) the exact softmax is used, never NaN
    assert torch.isfinite(upstream_top_k_softmax(torch.full((1, 2, 30), -200.0))).all()


def test_base_config_matches_inference_core_where_memory_similarity_underflows(tmp_path):
    """Issue 15: base config, 640x480, ids [1]; a scene change pushes a pixel's best memory similarity
    to about -102, where upstream's exp() is a denormal (the old max-subtracted softmax: 2.8e-3)."""
    export_dir = export_random_tracker(tmp_path / "base", 480, 640, cutie_config="base")
    frames, masks = moving_object_video(4)
    other, _ = moving_object_video(4, seed=3)
    frames = [frames[0]] + [np.clip(0.81 * f.astype(np.float32) + 0.19 * o, 0, 255).astype(np.uint8)
                            for f, o in zip(frames[1:], other[1:], strict=True)]
    ours, ref = CutieTracker(export_dir), ReferenceCutie(export_dir, cutie_config="base", objects=(1,))
    assert ours.settings.object_ids == [1]
    for i, frame in enumerate(frames):
        result = ours.init(frame, mask=masks[0]) if i == 0 else ours.track(frame)
        ref_prob, ref_mask = ref.init(frame, masks[0]) if i == 0 else ref.step(frame)
        assert np.abs(result.prob - ref_prob).max() <= 1e-3, i
        assert iou(result.mask, ref_mask) >= 0.99
