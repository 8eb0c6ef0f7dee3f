"""The VLM backend against a real local HTTP server speaking the chat-completions API."""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pytest

from runtime.clock import Clock
from runtime.planner import wire
from runtime.planner.backend import PlannerTimeoutError, VLMError, VLMImageLimitError
from runtime.planner.frames import BoxFrame
from runtime.planner.images import encode_image
from runtime.planner.replies import ReplyError
from runtime.planner.vlm_backend import VLMBackend
from runtime.planner.vlm_http import OpenAIChatClient

BOX = '{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}'


def make_backend(url, **kw):
    kw.setdefault("max_attempts", 3)
    kw.setdefault("backoff_s", 0.01)
    return VLMBackend(OpenAIChatClient(url, model="fake-vl", max_reply_bytes=kw.pop("max_reply_bytes", 64_000)), **kw)


def request(task, head, timeout_s=5.0, **kw):
    roles = wire.TASK_IMAGES[task]
    images = {r: encode_image(head, image_id=f"img-{r}", max_side_px=kw.pop("max_side_px", None)) for r in roles}
    text = {"prompt": "put away the red cube"} if "prompt" in wire.TASK_TEXT[task] else {"instruction": "the red cube"}
    return wire.TaskRequest("r1", "e1", task, timeout_s, images, **text)


def run(backend, req):
    return backend.run(req, Clock().now() + req.timeout_s)


def test_good_box_is_validated_and_prompt_carries_images(fake_vlm, head_image):
    fake_vlm.push(("good", BOX))
    out = run(make_backend(fake_vlm.url), request("bbox", head_image))
    assert out["bbox"] == [100, 200, 150, 250] and out["label"] == "red cube"
    assert out["image_id"] == "img-head" and out["image_size"] == [640, 480] and out["attempts"] == 1
    body = fake_vlm.requests[0]
    assert body["model"] == "fake-vl"
    parts = [p for m in body["messages"] for p in m["content"]]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 1 and urls[0].startswith("data:image/jpeg;base64,")
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(urls[0].split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (480, 640, 3)
    assert any("the red cube" in p.get("text", "") for p in parts)


def test_box_scaled_when_server_resizes_for_the_vlm(fake_vlm, head_image):
    # The backend sends a 320x240 image to the VLM; its answer (in those pixels) maps back to 640x480.
    fake_vlm.push(("good", '{"bbox_2d": [50, 100, 75, 125], "label": "red cube"}'))
    out = run(make_backend(fake_vlm.url, vlm_max_side_px=320), request("bbox", head_image))
    assert out["bbox"] == [100, 200, 150, 250]
    assert "320x240" in str(fake_vlm.requests[0])


@pytest.mark.parametrize("task, reply, key, expected", [
    ("verify", "Held tight.\nANSWER: true", "success", True),
    ("verify", "Still on the table.\nANSWER: false", "success", False),
    ("complete", "Nothing red left.\nANSWER: true", "completed", True),
    ("instruction", "Pick up the red cube on the left.", "instruction", "Pick up the red cube on the left."),
])
def test_other_tasks(fake_vlm, head_image, task, reply, key, expected):
    fake_vlm.push(("good", reply))
    out = run(make_backend(fake_vlm.url), request(task, head_image))
    assert out[key] == expected
    n_images = sum(p["type"] == "image_url" for m in fake_vlm.requests[0]["messages"] for p in m["content"])
    assert n_images == len(wire.TASK_IMAGES[task])


def test_malformed_reply_retried_then_good(fake_vlm, head_image):
    fake_vlm.push(("good", '{"bbox_2d": [150, 200, 100, 250]}'), ("good", BOX))
    out = run(make_backend(fake_vlm.url), request("bbox", head_image))
    assert out["bbox"] == [100, 200, 150, 250] and out["attempts"] == 2


def test_malformed_every_time_rejected_with_the_reason(fake_vlm, head_image):
    fake_vlm.default = ("good", '{"bbox_2d": [0, 0, 640, 480]}')
    with pytest.raises(ReplyError, match="covers"):
        run(make_backend(fake_vlm.url, max_attempts=2), request("bbox", head_image))
    assert len(fake_vlm.requests) == 2  # bounded


def test_truncated_envelope_rejected(fake_vlm, head_image):
    fake_vlm.default = ("truncated",)
    with pytest.raises(VLMError, match="not a chat-completions JSON envelope"):
        run(make_backend(fake_vlm.url, max_attempts=2), request("bbox", head_image))
    assert len(fake_vlm.requests) == 2


def test_cut_off_by_max_tokens_rejected(fake_vlm, head_image):
    fake_vlm.default = ("length", '{"bbox_2d": [100, 200, 150, 250]')
    with pytest.raises(ReplyError, match="max_tokens"):
        run(make_backend(fake_vlm.url, max_attempts=1), request("bbox", head_image))


def test_huge_reply_dropped_without_retry(fake_vlm, head_image):
    fake_vlm.default = ("huge", 1_000_000)
    with pytest.raises(VLMError, match="exceeds"):
        run(make_backend(fake_vlm.url, max_reply_bytes=64_000), request("bbox", head_image))
    assert len(fake_vlm.requests) == 1


def test_429_and_500_retried_within_deadline(fake_vlm, head_image):
    fake_vlm.push(("status", 429, 0), ("status", 500), ("good", BOX))
    out = run(make_backend(fake_vlm.url), request("bbox", head_image))
    assert out["attempts"] == 3


def test_persistent_500_reports_the_status(fake_vlm, head_image):
    fake_vlm.default = ("status", 500)
    with pytest.raises(VLMError, match="HTTP 500"):
        run(make_backend(fake_vlm.url), request("bbox", head_image))
    assert len(fake_vlm.requests) == 3


def test_retry_after_beyond_deadline_is_not_waited_for(fake_vlm, head_image):
    fake_vlm.default = ("status", 429, 30)
    t0 = time.monotonic()
    with pytest.raises(VLMError, match="HTTP 429"):
        run(make_backend(fake_vlm.url), request("bbox", head_image, timeout_s=1.0))
    assert time.monotonic() - t0 < 1.0  # gave up at once instead of sleeping 30 s
    assert len(fake_vlm.requests) == 1


def test_400_not_retried(fake_vlm, head_image):
    fake_vlm.default = ("status", 400)
    with pytest.raises(VLMError, match="HTTP 400"):
        run(make_backend(fake_vlm.url), request("bbox", head_image))
    assert len(fake_vlm.requests) == 1


def test_slow_reply_times_out_at_the_deadline(fake_vlm, head_image):
    deadline_s = 0.4
    fake_vlm.default = ("slow", 2 * deadline_s, BOX)
    t0 = time.monotonic()
    with pytest.raises(PlannerTimeoutError):
        run(make_backend(fake_vlm.url), request("bbox", head_image, timeout_s=deadline_s))
    elapsed = time.monotonic() - t0
    assert elapsed >= deadline_s * 0.9
    assert elapsed < 2 * deadline_s  # did not wait for the slow answer


def test_connection_refused_is_a_vlm_error(head_image):
    backend = make_backend("http://127.0.0.1:9/v1", max_attempts=2)
    with pytest.raises(VLMError, match="failed"):
        run(backend, request("bbox", head_image, timeout_s=2.0))


def test_model_resolved_from_models_endpoint(fake_vlm):
    client = OpenAIChatClient(fake_vlm.url)
    assert client.resolve_model() == "fake-vl"
    client.close()


# vLLM's answers when a prompt carries more images than --limit-mm-per-prompt allows (current
# wording with the hint, and the older "in one request" wording of the V0 engine).
VLLM_LIMIT_BODIES = [
    b'{"error": {"message": "At most 1 image(s) may be provided in one prompt. Set `--limit-mm-per-prompt`'
    b' to increase this limit. (parameter=image)", "type": "BadRequestError", "param": "image", "code": 400}}',
    b'{"object": "error", "message": "At most 1 image(s) may be provided in one request.",'
    b' "type": "BadRequestError", "param": null, "code": 400}',
]


@pytest.mark.parametrize("body", VLLM_LIMIT_BODIES)
@pytest.mark.parametrize("task", ["verify", "complete", "instruction"])
def test_image_limit_400_says_what_to_set(fake_vlm, head_image, body, task):
    fake_vlm.default = ("status", 400, None, body)
    with pytest.raises(VLMImageLimitError) as info:
        run(make_backend(fake_vlm.url), request(task, head_image))
    message = str(info.value)
    assert len(fake_vlm.requests) == 1  # a configuration problem: retrying cannot help
    assert "at most 1 image" in message and "sends 2" in message and f"'{task}'" in message
    assert "--limit-mm-per-prompt '{\"image\": 2}'" in message  # current vLLM (JSON)
    assert "--limit-mm-per-prompt image=2" in message            # older vLLM
    assert isinstance(info.value, VLMError) and not info.value.retryable


def test_unrelated_400_stays_a_plain_http_error(fake_vlm, head_image):
    fake_vlm.default = ("status", 400, None, b'{"error": {"message": "max_tokens must be at least 1"}}')
    with pytest.raises(VLMError, match="HTTP 400") as info:
        run(make_backend(fake_vlm.url), request("verify", head_image))
    assert not isinstance(info.value, VLMImageLimitError)


def test_qwen25_frame_box_at_the_resized_edge_maps_back(fake_vlm, head_image):
    # Qwen2.5-VL sees 640x480 as 644x476 and answers in that frame, up to its corner.
    fake_vlm.push(("good", '{"bbox_2d": [600, 400, 644, 476], "label": "bin"}'))
    out = run(make_backend(fake_vlm.url, coords="qwen2.5-vl"), request("bbox", head_image))
    assert out["bbox"] == [596, 403, 640, 480] and out["image_size"] == [640, 480]
    assert "644x476" in str(fake_vlm.requests[0]["messages"])  # the prompt names the model's frame
    assert out["attempts"] == 1


def test_qwen25_frame_with_custom_max_pixels(fake_vlm, head_image):
    # vLLM started with --mm-processor-kwargs '{"max_pixels": 200704}' (256 tokens): 640x480 -> 504x364.
    frame = BoxFrame("qwen2.5-vl", max_pixels=200704)
    fake_vlm.push(("good", '{"bbox_2d": [252, 182, 504, 364]}'))
    out = run(make_backend(fake_vlm.url, coords=frame), request("bbox", head_image))
    assert out["bbox"] == [320, 240, 640, 480]
