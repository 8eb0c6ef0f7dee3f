"""Wire schema: anything malformed is a WireError naming the field; random bytes never crash the decoder."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from runtime.planner import wire
from runtime.planner.images import decode_image, encode_image
from runtime.planner.wire import WireError, WireImage


def request_msg(**over):
    img = encode_image(np.zeros((48, 64, 3), np.uint8), image_id="i1").to_wire()
    msg = {"type": "request", "protocol": 1, "request_id": "r1", "episode_id": "e1", "task": "bbox",
           "timeout_s": 2.0, "images": {"head": img}, "instruction": "the red cube"}
    msg.update(over)
    return msg


def test_round_trip_of_a_request():
    req = wire.parse_request(wire.unpack(wire.pack(request_msg())))
    assert req.task == "bbox" and req.images["head"].width == 64 and req.images["head"].orig_height == 48
    again = wire.parse_request(wire.unpack(wire.pack(req.to_wire())))
    assert again == req


@pytest.mark.parametrize("over, field", [
    ({"task": "dance"}, "task"),
    ({"timeout_s": float("nan")}, "timeout_s"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"timeout_s": True}, "timeout_s"),
    ({"request_id": 5}, "request_id"),
    ({"request_id": "x" * 500}, "request_id"),
    ({"images": {}}, "needs image 'head'"),
    ({"images": []}, "images"),
    ({"instruction": ""}, "non-empty 'instruction'"),
    ({"instruction": None}, "instruction"),
    ({"images": {"head": {"data": b"", "format": "jpeg", "width": 1, "height": 1, "image_id": "x"}}}, "data"),
    ({"images": {"head": {"data": b"x", "format": "gif", "width": 1, "height": 1, "image_id": "x"}}}, "format"),
    ({"images": {"head": {"data": b"x", "format": "png", "width": 0, "height": 1, "image_id": "x"}}}, "width"),
])
def test_bad_requests_name_the_field(over, field):
    with pytest.raises(WireError, match=field):
        wire.parse_request(request_msg(**over))


def test_protocol_version_and_type_checked():
    with pytest.raises(WireError, match="protocol version 2"):
        wire.unpack(msgpack.packb({"type": "hello", "protocol": 2}))
    with pytest.raises(WireError, match="'type'"):
        wire.unpack(msgpack.packb({"protocol": 1}))
    with pytest.raises(WireError, match="expected a map"):
        wire.unpack(msgpack.packb([1, 2, 3]))


def test_size_limits_on_both_directions():
    big = request_msg(images={"head": {**request_msg()["images"]["head"], "data": b"\0" * 2000}})
    with pytest.raises(WireError, match="over the 1000-byte limit"):
        wire.pack(big, max_bytes=1000)
    with pytest.raises(WireError, match="over the 1000-byte limit"):
        wire.unpack(msgpack.packb(big), max_bytes=1000)


def test_random_and_truncated_bytes_only_ever_raise_wire_error():
    rng = np.random.default_rng(0)
    good = wire.pack(request_msg())
    for i in range(2000):
        if i % 2:
            data = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        else:
            data = good[: int(rng.integers(0, len(good)))]
        try:
            msg = wire.unpack(data)
        except WireError:
            continue
        try:
            wire.parse_request(msg)
        except WireError:
            pass


def test_decode_checks_declared_size():
    img = encode_image(np.zeros((48, 64, 3), np.uint8), fmt="png", image_id="a")
    assert decode_image(img).shape == (48, 64, 3)
    lying = WireImage(img.data, "png", 640, 480, "a", 640, 480)
    with pytest.raises(WireError, match="declared 640x480"):
        decode_image(lying)
    with pytest.raises(WireError, match="does not decode"):
        decode_image(WireImage(b"not an image", "png", 64, 48, "b", 64, 48))


def test_encode_downscales_and_keeps_the_original_size():
    img = encode_image(np.zeros((480, 640, 3), np.uint8), max_side_px=320)
    assert (img.width, img.height, img.orig_width, img.orig_height) == (320, 240, 640, 480)
    with pytest.raises(WireError, match="HxWx3 uint8"):
        encode_image(np.zeros((480, 640), np.uint8))


def test_error_codes_are_checked():
    with pytest.raises(ValueError, match="unknown planner error code"):
        wire.error_result("r", "e", "bbox", "oops", "", {})
