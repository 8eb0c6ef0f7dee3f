"""The real planner: the four DexGraspVLA tasks answered by a VLM over the OpenAI API.

Bounded retries inside the request's overall deadline: each attempt gets
min(attempt_timeout_s, time left); 429/5xx/timeouts/connection errors and replies that fail
validation are retried (a sampled model may answer well the second time), other HTTP errors are
not. A retry only starts with at least `min_attempt_s` left: the backoff is shortened to leave it,
and a 429's Retry-After is honoured only if it leaves it (retry.py). After the last attempt the
last error is raised, so the caller always learns *why* (e.g. "box is reversed ...").
"""

from __future__ import annotations

import base64
import logging

from runtime.clock import Clock
from runtime.planner import prompts
from runtime.planner.backend import PlannerTimeoutError, VLMError, VLMImageLimitError
from runtime.planner.frames import BoxFrame, as_frame
from runtime.planner.images import decode_image, encode_image
from runtime.planner.replies import (
    ReplyError,
    parse_bool_reply,
    parse_box_reply,
    parse_instruction_reply,
)
from runtime.planner.retry import retry_wait, with_note
from runtime.planner.vlm_http import OpenAIChatClient
from runtime.planner.wire import TaskRequest, WireImage

log = logging.getLogger(__name__)


def data_url(image: WireImage) -> str:
    mime = "image/png" if image.format == "png" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(image.data).decode('ascii')}"


class VLMBackend:
    """Implements PlannerBackend against an OpenAI-compatible VLM. Thread-safe; `run` blocks to the deadline."""

    name = "vlm"

    def __init__(
        self,
        client: OpenAIChatClient,
        clock: Clock | None = None,
        max_attempts: int = 3,
        attempt_timeout_s: float = 30.0,
        backoff_s: float = 0.2,
        min_attempt_s: float = 0.5,
        coords: str | BoxFrame = "pixels",
        vlm_max_side_px: int | None = None,
        box_limits: dict | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.client = client
        self.clock = clock or Clock()
        self.max_attempts = int(max_attempts)
        self.attempt_timeout_s = float(attempt_timeout_s)
        self.backoff_s = float(backoff_s)
        self.min_attempt_s = float(min_attempt_s)  # a retry needs this much time left (retry.py)
        self.coords = as_frame(coords)  # the frame the model writes boxes in (frames.py)
        self.vlm_max_side_px = vlm_max_side_px
        self.box_limits = dict(box_limits or {})

    def close(self) -> None:
        self.client.close()

    def _for_vlm(self, image: WireImage) -> WireImage:
        """Downscale for models with a pixel budget; keeps orig_* so boxes map back to camera pixels."""
        if self.vlm_max_side_px is None or max(image.width, image.height) <= self.vlm_max_side_px:
            return image
        small = encode_image(decode_image(image), fmt=image.format, max_side_px=self.vlm_max_side_px,
                             image_id=image.image_id)
        return WireImage(small.data, small.format, small.width, small.height, image.image_id,
                         image.orig_width, image.orig_height)

    def _prepare(self, req: TaskRequest):
        """Messages for the task and the parser that validates its reply."""
        imgs = {role: self._for_vlm(img) for role, img in req.images.items()}
        urls = {role: data_url(img) for role, img in imgs.items()}
        if req.task == "instruction":
            return (prompts.instruction_messages(req.prompt, urls["initial_head"], urls["head"]),
                    parse_instruction_reply)
        if req.task == "bbox":
            head = imgs["head"]
            msgs = prompts.bbox_messages(req.instruction, urls["head"], head.width, head.height, self.coords)

            def parse(text: str) -> dict:
                out = parse_box_reply(text, (head.width, head.height), (head.orig_width, head.orig_height),
                                      coords=self.coords, **self.box_limits)
                out["image_id"] = head.image_id
                out["image_size"] = [head.orig_width, head.orig_height]
                return out
            return msgs, parse
        if req.task == "verify":
            return (prompts.verify_messages(req.instruction, urls["head"], urls["wrist"]),
                    lambda text: parse_bool_reply(text, "success"))
        if req.task == "complete":
            return (prompts.complete_messages(req.prompt, urls["initial_head"], urls["head"]),
                    lambda text: parse_bool_reply(text, "completed"))
        raise ValueError(f"unknown task {req.task!r}")

    def run(self, request: TaskRequest, deadline: float) -> dict:
        messages, parse = self._prepare(request)
        last_error: Exception | None = None
        note = ""
        for attempt in range(1, self.max_attempts + 1):
            if last_error is not None:  # a retry: scheduled so that it can finish (retry.py)
                wait_s, note = retry_wait(last_error, attempt - 1, self.max_attempts, deadline - self.clock.now(),
                                          self.backoff_s, self.min_attempt_s)
                if wait_s is None:
                    break
                if wait_s > 0:
                    self.clock.sleep_until(self.clock.now() + wait_s)
            remaining = deadline - self.clock.now()
            if remaining <= 0.0:
                break
            try:
                reply = self.client.chat(messages, min(self.attempt_timeout_s, remaining))
                if reply.finish_reason == "length":
                    raise ReplyError(f"reply was cut off by max_tokens: {reply.text[:120]!r}")
                result = parse(reply.text)
                result["attempts"] = attempt
                result["vlm_latency_s"] = reply.latency_s
                return result
            except ReplyError as exc:
                last_error = exc
                log.warning("planner %s %s: attempt %d/%d: invalid reply: %s", request.task,
                            request.request_id, attempt, self.max_attempts, exc)
            except PlannerTimeoutError as exc:
                last_error = exc
                log.warning("planner %s %s: attempt %d/%d timed out: %s", request.task,
                            request.request_id, attempt, self.max_attempts, exc)
            except VLMError as exc:
                last_error = exc
                log.warning("planner %s %s: attempt %d/%d: %s", request.task, request.request_id,
                            attempt, self.max_attempts, exc)
                if isinstance(exc, VLMImageLimitError):
                    raise VLMImageLimitError(f"planner task '{request.task}': {exc}", exc.status) from exc
                if not exc.retryable:
                    raise
        if last_error is None or (isinstance(last_error, PlannerTimeoutError) and self.clock.now() >= deadline):
            raise PlannerTimeoutError(
                f"no valid answer before the deadline ({request.timeout_s:.2f} s budget)"
                + (f"; last error: {last_error}" if last_error else "")
            )
        raise with_note(last_error, note)
