"""Box coordinate frames: Qwen2.5-VL answers in the frame its processor resized the image to.

Expected sizes are worked out by hand from the rule in transformers' Qwen2VLImageProcessor /
qwen-vl-utils `smart_resize` (each side rounded to a multiple of 28, then the area clamped to
[min_pixels, max_pixels] keeping the aspect ratio).
"""

from __future__ import annotations

import pytest

from runtime.planner.frames import BoxFrame, qwen_resized_size
from runtime.planner.prompts import bbox_messages
from runtime.planner.replies import ReplyError, parse_box_reply

QWEN = BoxFrame("qwen2.5-vl")


@pytest.mark.parametrize("size, kw, expected", [
    ((640, 480), {}, (644, 476)),              # 22.86 -> 23 * 28, 17.14 -> 17 * 28 (the case)
    ((1920, 1080), {}, (1932, 1092)),          # under Qwen2.5-VL's max_pixels 12845056: rounding only
    ((1920, 1080), {"max_pixels": 1003520}, (1316, 728)),  # transformers' default 28*28*1280: shrunk
    ((20, 20), {}, (56, 56)),                  # below min_pixels 3136: grown to 56x56
    ((320, 240), {}, (308, 252)),              # 11.43 -> 11, 8.57 -> 9
])
def test_qwen_resized_size(size, kw, expected):
    assert qwen_resized_size(*size, **kw) == expected


def test_qwen_resize_rejects_extreme_aspect_ratio():
    with pytest.raises(ValueError, match="aspect ratio"):
        qwen_resized_size(6000, 20)


def test_frame_options_are_checked():
    with pytest.raises(ValueError, match="box frame"):
        BoxFrame("qwen3")
    with pytest.raises(ValueError, match="min_pixels"):
        BoxFrame("qwen2.5-vl", min_pixels=5000, max_pixels=4000)


def test_box_at_the_resized_frames_far_edges_maps_back_to_the_camera_frame():
    # 640x480 sent; the model saw 644x476 and answers up to its bottom-right corner.
    out = parse_box_reply('{"bbox_2d": [600, 400, 644, 476]}', (640, 480), (640, 480), coords=QWEN)
    assert out["bbox"] == [596, 403, 640, 480]  # 600*640/644 = 596.3, 400*480/476 = 403.4


def test_box_at_the_resized_frames_origin():
    out = parse_box_reply('{"bbox_2d": [0, 0, 56, 42]}', (640, 480), (640, 480), coords=QWEN)
    assert out["bbox"] == [0, 0, 56, 42]  # 55.65 -> 56, 42.35 -> 42


def test_same_reply_in_the_sent_frame_is_rejected():
    # Why the frame option exists: read as sent-image pixels, x2 = 644 is 4 px outside 640.
    with pytest.raises(ReplyError, match="outside the 640x480"):
        parse_box_reply('{"bbox_2d": [600, 400, 644, 476]}', (640, 480), (640, 480), coords="pixels")


def test_box_outside_the_resized_frame_is_still_rejected():
    with pytest.raises(ReplyError, match="outside the 644x476"):
        parse_box_reply('{"bbox_2d": [600, 400, 647, 476]}', (640, 480), (640, 480), coords=QWEN)


def test_resized_frame_of_a_downscaled_image_maps_to_the_original_camera_frame():
    # Sent at 320x240 (client or server downscale), Qwen resizes that to 308x252.
    out = parse_box_reply('{"bbox_2d": [154, 126, 308, 252]}', (320, 240), (640, 480), coords=QWEN)
    assert out["bbox"] == [320, 240, 640, 480]


def test_prompt_names_the_resized_frame():
    text = " ".join(p.get("text", "") for m in bbox_messages("the cube", "data:,", 640, 480, QWEN)
                    for p in m["content"])
    assert "644x476" in text and "640x480" not in text
