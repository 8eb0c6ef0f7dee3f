"""Reply parsing and box validation: every malformed answer is rejected with a reason."""

from __future__ import annotations

import pytest

from runtime.planner.replies import (
    ReplyError,
    extract_json,
    parse_bool_reply,
    parse_box_reply,
    parse_instruction_reply,
    validate_box,
)

SIZE = (640, 480)


def box(text, sent=SIZE, orig=SIZE, coords="pixels"):
    return parse_box_reply(text, sent, orig, coords=coords)


def test_good_box_with_label():
    out = box('{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}')
    assert out == {"bbox": [100, 200, 150, 250], "label": "red cube"}


@pytest.mark.parametrize("text", [
    '```json\n{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}\n```',
    'Sure! Here it is: {"bbox_2d": [100, 200, 150, 250], "label": "red cube"} Hope this helps.',
    '[{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}]',
])
def test_safe_repairs_fences_prose_and_single_item_list(text):
    assert box(text)["bbox"] == [100, 200, 150, 250]


def test_bare_list_of_four_numbers():
    assert box("[100, 200, 150.4, 250.6]")["bbox"] == [100, 200, 150, 251]


@pytest.mark.parametrize("text, reason", [
    ('{"bbox_2d": [100, 200, 150, 250]', "truncated"),
    ('{"bbox_2d": [NaN, 200, 150, 250]}', "NaN"),
    ('{"bbox_2d": [-5, 200, 150, 250]}', "negative"),
    ('{"bbox_2d": [150, 200, 100, 250]}', "reversed"),
    ('{"bbox_2d": [100, 250, 150, 200]}', "reversed"),
    ('{"bbox_2d": [100, 200, 100, 250]}', "reversed"),
    ('{"bbox_2d": [100, 200, 102, 250]}', "degenerate"),
    ('{"bbox_2d": [600, 200, 900, 250]}', "outside"),
    ('{"bbox_2d": [700, 500, 800, 600]}', "outside"),
    ('{"bbox_2d": [0, 0, 640, 480]}', "covers"),
    ('{"bbox_2d": [1, 2, 3]}', "4 numbers"),
    ('{"bbox_2d": [true, 2, 30, 40]}', "not a number"),
    ('{"bbox_2d": ["10", 2, 30, 40]}', "not a number"),
    ('{"bbox_2d": null, "label": "not found"}', "not visible"),
    ('{"label": "red cube"}', "no 'bbox_2d'"),
    ('[{"bbox_2d": [1, 2, 30, 40]}, {"bbox_2d": [50, 60, 90, 100]}]', "exactly one"),
    ("I cannot see a red cube.", "no JSON"),
    ("", "empty"),
])
def test_bad_boxes_are_rejected_with_a_reason(text, reason):
    with pytest.raises(ReplyError, match=reason):
        box(text)


def test_box_for_a_larger_image_is_rejected():
    # The model answered in 1280x960 pixels but we sent 640x480.
    with pytest.raises(ReplyError, match="another image size"):
        box('{"bbox_2d": [800, 600, 900, 700]}')


def test_box_scaled_back_to_original_frame_when_image_was_resized():
    # 640x480 camera frame sent as 320x240; the model answers in the sent image's pixels.
    out = box('{"bbox_2d": [50, 100, 75, 125]}', sent=(320, 240), orig=(640, 480))
    assert out["bbox"] == [100, 200, 150, 250]


def test_norm1000_coordinates_are_mapped_to_pixels():
    out = box('{"bbox_2d": [250, 500, 500, 750]}', coords="norm1000")
    assert out["bbox"] == [160, 240, 320, 360]


def test_tolerance_clips_last_pixel_but_not_beyond():
    assert box('{"bbox_2d": [600, 400, 641, 481]}')["bbox"] == [600, 400, 640, 480]
    with pytest.raises(ReplyError, match="outside"):
        box('{"bbox_2d": [600, 400, 650, 481]}')


def test_validate_box_rejects_infinity():
    with pytest.raises(ReplyError, match="finite"):
        validate_box([1.0, 2.0, float("inf"), 40.0], 640, 480)


def test_extract_json_rejects_infinity_literal():
    with pytest.raises(ReplyError, match="Infinity"):
        extract_json('{"bbox_2d": [1, 2, Infinity, 4]}')


@pytest.mark.parametrize("text, expected", [
    ("The cube is held firmly in the hand.\nANSWER: true", True),
    ("The cube is still on the table.\nANSWER: false", False),
    ("answer: **TRUE**", True),
    ('{"success": false, "reasoning": "empty hand"}', False),
    ("True", True),
    ("false.", False),
    # Reasoning mentions both words; the ANSWER line decides.
    ("It is not false that the hand holds it; true grasp.\nANSWER: true", True),
])
def test_booleans(text, expected):
    assert parse_bool_reply(text, "success")["success"] is expected


@pytest.mark.parametrize("text, reason", [
    ("It might be true or false.", "ambiguous"),
    ("The object is in the hand.", "no true/false"),
    ('{"success": "yes"}', "not a JSON boolean"),
    ("", "empty"),
])
def test_ambiguous_booleans_are_rejected(text, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_bool_reply(text, "success")


def test_instruction_cleaned():
    assert parse_instruction_reply('Instruction: "Pick up the red cube on the left."') == {
        "instruction": "Pick up the red cube on the left."}


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("a\nb\nc\nd", "lines"),
    ("x" * 400, "characters"),
])
def test_bad_instructions_rejected(text, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_instruction_reply(text)
