"""`dexgrasp export tracker` and `dexgrasp track` end to end through the real CLI (fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("cutie", reason="exporting needs rf-cutie (tracker extra)")

H, W = 96, 128


def dexgrasp(*args: str, torch_free: bool = False) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom runtime.cli.main import main\n"
            f"rc = main({list(args)!r})\n"
            + ("if 'torch' in sys.modules:\n    print('TORCH WAS IMPORTED', file=sys.stderr); rc = 99\n"
               if torch_free else "") + "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "model"
    proc = dexgrasp("export", "tracker", "--random-init", "--cutie-config", "small", "--height", str(H),
                    "--width", str(W), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cutie_segment" in proc.stdout and "objects [1]" in proc.stdout  # upstream: target only
    return out


def test_export_writes_manifest_with_shapes_hashes_and_upstream_settings(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["kind"] == "tracker" and manifest["precision"] == "fp32"
    assert set(manifest["graphs"]) == {"cutie_encode_image", "cutie_encode_mask", "cutie_segment"}
    c = manifest["cutie"]
    assert (c["height"], c["width"], c["mem_every"], c["max_mem_frames"], c["top_k"]) == (H, W, 5, 5, 30)
    seg = manifest["graphs"]["cutie_segment"]
    shapes = {t["name"]: t["shape"] for t in seg["inputs"]}
    assert shapes["mem_key"] == [1, c["key_dim"], 5 * (H // 16) * (W // 16)]
    assert all(len(g["sha256"]) == 64 for g in manifest["graphs"].values())


def test_track_writes_masks_probs_and_one_json_line_without_torch(exported, tmp_path):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    from runtime.tracking.learned.synthetic import moving_object_video

    frames, masks = moving_object_video(7, height=H, width=W, radius_px=(16, 12), step_px=(3.0, 1.0))
    for i, frame in enumerate(frames):
        cv2.imwrite(str(frames_dir / f"{i:03d}.png"), frame)
    cv2.imwrite(str(tmp_path / "mask0.png"), masks[0] * 255)
    out = tmp_path / "out"
    proc = dexgrasp("track", "--model", str(exported), "--frames", str(frames_dir), "--init-mask",
                    str(tmp_path / "mask0.png"), "--output", str(out), torch_free=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["frames"] == 7
    assert {"cutie_encode_image", "cutie_segment", "cutie_encode_mask"} <= set(line["latency_ms"])
    assert line["latency_ms"]["cutie_segment"]["count"] == 6
    assert all(v["p99"] >= v["p50"] > 0 for v in line["latency_ms"].values())
    pngs = sorted(out.glob("mask_*.png"))
    assert len(pngs) == 7
    first = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(first > 0, masks[0] > 0)  # the init frame returns the given mask
    probs = np.load(out / "probs.npz")["probs"]
    assert probs.shape == (7, H, W) and probs.dtype == np.float16
    assert probs[0][masks[0] > 0].min() > 0.99


def test_track_rejects_frames_of_another_size_with_a_clear_message(exported, tmp_path):
    frames_dir = tmp_path / "wrong"
    frames_dir.mkdir()
    cv2.imwrite(str(frames_dir / "000.png"), np.zeros((H + 8, W, 3), np.uint8))
    proc = dexgrasp("track", "--model", str(exported), "--frames", str(frames_dir), "--box", "1,2,30,40",
                    "--output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "frame is" in proc.stderr and "Traceback" not in proc.stderr


def test_track_with_a_box_needs_sam_in_the_export(exported, tmp_path):
    proc = dexgrasp("track", "--model", str(exported), "--frames", "synthetic:3", "--box", "10,10,60,50",
                    "--output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no SAM" in proc.stderr


def test_export_without_weights_is_a_clear_error(tmp_path):
    proc = dexgrasp("export", "tracker", "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "--cutie-checkpoint" in proc.stderr


def test_bad_cutie_checkpoints_are_named(tmp_path):
    import torch

    from export.tracker.cutie_model import build_cutie
    from runtime.errors import CheckpointError

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_cutie("small", checkpoint=garbage)
    small = tmp_path / "small.pth"
    torch.save(build_cutie("small", seed=1).state_dict(), small)
    with pytest.raises(CheckpointError, match="does not fit Cutie config 'base'"):
        build_cutie("base", checkpoint=small)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_cutie("small", checkpoint=tmp_path / "missing.pth")


def test_default_export_tracks_target_only(exported):
    """Upstream's inference.py drops 0 from np.unique(mask): the default export tracks ids [1] only."""
    from runtime.tracking.cutie import CutieTracker

    assert CutieTracker(exported).settings.object_ids == [1]
