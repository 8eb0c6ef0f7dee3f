"""Exported SAM (box -> best mask) vs segment_anything.

Two references:
  - always: the package's own model modules (Sam.preprocess, image_encoder, prompt_encoder,
    mask_decoder, postprocess_masks) driven like SamPredictor, with Pillow's bilinear resize (what
    ResizeLongestSide.apply_image calls through torchvision);
  - SamPredictor.predict(box=...) itself, in the interpreter named by DEXGRASP_SAM_REFERENCE_PYTHON
    (a venv with a torchvision matching its torch; CI creates it, see docs/tracker.md).
Random vit_b weights (the encoder input is fixed at 1024x1024, so every call costs seconds: few calls).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import warnings

import numpy as np
import pytest

if importlib.util.find_spec("segment_anything") is None:  # importing it may fail for want of torchvision
    pytest.skip("the tracker extra's segment-anything package is needed", allow_module_level=True)
PIL = pytest.importorskip("PIL.Image", reason="Pillow is the reference for SAM's resize")

from runtime.errors import ObservationError  # noqa: E402
from runtime.tracking.cutie import CutieTracker  # noqa: E402
from runtime.tracking.learned.synthetic import moving_object_video  # noqa: E402
from runtime.tracking.sam import SamBoxSegmenter, pil_bilinear_resize  # noqa: E402
from tests.export.tracker.tracker_fixtures import export_random_tracker, iou  # noqa: E402

H, W = 480, 640
BOXES = np.array([[122.0, 142.0, 262.0, 242.0], [300.5, 60.25, 600.0, 400.0]])
REFERENCE_PYTHON_ENV = "DEXGRASP_SAM_REFERENCE_PYTHON"


@pytest.fixture(scope="module")
def sam_export(tmp_path_factory):
    return export_random_tracker(tmp_path_factory.mktemp("sam"), H, W, with_sam=True, sam_type="vit_b")


@pytest.fixture(scope="module")
def scene():
    frames, _ = moving_object_video(1)
    return frames[0]


@pytest.fixture(scope="module")
def ours(sam_export, scene):
    segmenter = SamBoxSegmenter(sam_export)
    embeddings = segmenter.encode(scene)
    return [segmenter.predict(embeddings, box) for box in BOXES]


def _sam_checkpoint(export_dir):
    (path,) = sorted(export_dir.glob("sam_vit_b_random_seed*.pth"))
    return path


@pytest.mark.parametrize("in_hw,out_hw", [((480, 640), (768, 1024)), ((37, 53), (120, 80)),
                                          ((360, 640), (576, 1024)), ((64, 48), (64, 97))])
def test_resize_is_bit_exact_with_pillow_bilinear(in_hw, out_hw):
    """Upscaling (every camera up to 1024 px on its long side): bit-exact with Pillow."""
    image = np.random.default_rng(0).integers(0, 256, size=(*in_hw, 3), dtype=np.uint8)
    expected = np.asarray(PIL.fromarray(image).resize((out_hw[1], out_hw[0]), PIL.BILINEAR))
    np.testing.assert_array_equal(pil_bilinear_resize(image, out_hw), expected)


def test_sam_matches_the_model_modules_driven_like_sampredictor(sam_export, scene, ours):
    import torch

    from export.tracker.sam_graphs import preprocess_shape
    from export.tracker.sam_model import build_sam

    torch.set_grad_enabled(False)
    sam = build_sam("vit_b", checkpoint=_sam_checkpoint(sam_export))
    rgb = scene[..., ::-1]
    input_hw = preprocess_shape(H, W, 1024)
    resized = np.asarray(PIL.fromarray(np.ascontiguousarray(rgb)).resize((input_hw[1], input_hw[0]), PIL.BILINEAR))
    x = torch.as_tensor(np.array(resized)).permute(2, 0, 1).contiguous()[None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = sam.image_encoder(sam.preprocess(x))
    for box, result in zip(BOXES, ours, strict=True):
        scaled = (box.reshape(2, 2) * np.array([input_hw[1] / W, input_hw[0] / H])).reshape(1, 4)
        sparse, dense = sam.prompt_encoder(points=None, boxes=torch.as_tensor(scaled, dtype=torch.float), masks=None)
        low_res, iou_pred = sam.mask_decoder(image_embeddings=features, image_pe=sam.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                             multimask_output=True)
        masks = (sam.postprocess_masks(low_res, input_hw, (H, W)) > sam.mask_threshold)[0].numpy()
        scores = iou_pred[0].numpy()
        best = masks[np.argmax(scores)]
        assert 0.001 < best.mean() < 0.999  # a non-trivial mask
        np.testing.assert_allclose(result.scores, scores, atol=1e-3)
        assert result.info["best"] == int(np.argmax(scores))
        assert iou(result.mask, best) >= 0.99


@pytest.mark.skipif(not os.environ.get(REFERENCE_PYTHON_ENV),
                    reason=f"set {REFERENCE_PYTHON_ENV} to a python whose segment_anything imports "
                           "(torch + matching torchvision; .ci/run creates one)")
def test_sam_matches_sampredictor_predict_box(sam_export, scene, ours, tmp_path):
    image_path, boxes_path, out_path = tmp_path / "image.npy", tmp_path / "boxes.npy", tmp_path / "ref.npz"
    np.save(image_path, scene)
    np.save(boxes_path, BOXES)
    script = os.path.join(os.path.dirname(__file__), "sam_predictor_reference.py")
    proc = subprocess.run([os.environ[REFERENCE_PYTHON_ENV], script, "--checkpoint", str(_sam_checkpoint(sam_export)),
                           "--sam-type", "vit_b", "--image-bgr", str(image_path), "--boxes", str(boxes_path),
                           "--out", str(out_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = np.load(out_path)
    for i, result in enumerate(ours):
        np.testing.assert_allclose(result.scores, ref[f"scores_{i}"], atol=1e-3)
        assert result.info["best"] == int(np.argmax(ref[f"scores_{i}"]))
        assert iou(result.mask, ref[f"best_{i}"]) >= 0.99


@pytest.mark.parametrize("box", [[np.nan, 1, 2, 3], [50, 50, 40, 60], [50, 50, 50, 60], [700, 10, 800, 60],
                                 [-90, -90, -10, -10], [1, 2, 3]])
def test_bad_boxes_are_rejected_with_a_reason(sam_export, box):
    with pytest.raises(ObservationError, match="box"):
        SamBoxSegmenter(sam_export).check_box(box)


def test_tracker_initialised_from_a_box_starts_from_the_sam_mask(sam_export, scene, ours):
    tracker = CutieTracker(sam_export)
    result = tracker.init(scene, box_xyxy=BOXES[0])
    np.testing.assert_array_equal(result.mask, ours[0].mask)
    assert result.info["sam"]["best"] == ours[0].info["best"]
    assert set(tracker.latency_summary_ms()) >= {"sam_image_encoder", "sam_prompt_decoder", "cutie_encode_image"}
