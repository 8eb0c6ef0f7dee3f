"""A small OpenAI chat-completions client on httpx, with the limits a robot needs.

Why not the `openai` package: we need a hard cap on reply size (a runaway model can stream
megabytes), an exact per-attempt timeout derived from the request's deadline, and the 429
Retry-After value; a plain httpx POST gives all three in a few lines and one fewer dependency.

Thread-safe: one httpx.Client is shared by the server's worker threads.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

from runtime.errors import require
from runtime.planner.backend import PlannerTimeoutError, VLMError, VLMImageLimitError
from runtime.planner.wire import TASK_IMAGES

log = logging.getLogger(__name__)

DEFAULT_MAX_REPLY_BYTES = 256 * 1024


@dataclass(frozen=True)
class ChatReply:
    """The assistant's text, why it stopped ("stop", "length", ...), and the HTTP round trip time."""

    text: str
    finish_reason: str | None
    latency_s: float


def chat_completions_url(base_url: str) -> str:
    """Accept 'http://host:8000/v1', '.../v1/' or the full '.../v1/chat/completions'."""
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + "/chat/completions"


class OpenAIChatClient:
    """POSTs chat-completions requests. `chat()` blocks up to `timeout_s`; raises VLMError/PlannerTimeoutError."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        httpx = require("httpx", "planner", "The VLM planner backend")
        self.url = chat_completions_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.max_reply_bytes = int(max_reply_bytes)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # Keep-alive connections are reused across worker threads; no library-level retries:
        # retries are ours, bounded by the request's deadline.
        self._httpx = httpx
        self._client = httpx.Client(headers=headers, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def resolve_model(self, timeout_s: float = 5.0) -> str:
        """Use the configured model, or ask the server (GET /models) like upstream does. Blocks <= timeout_s."""
        if self.model:
            return self.model
        url = self.base_url[: -len("/chat/completions")] if self.base_url.endswith("/chat/completions") \
            else self.base_url
        try:
            resp = self._client.get(url + "/models", timeout=timeout_s)
            resp.raise_for_status()
            data = resp.json()["data"]
            self.model = str(data[0]["id"])
        except (self._httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise VLMError(f"cannot list models at {url}/models ({type(exc).__name__}: {exc}); pass --model") from exc
        return self.model

    def chat(self, messages: list[dict], timeout_s: float) -> ChatReply:
        """One attempt. Every phase (connect, send, first byte, whole body) fits in `timeout_s`."""
        httpx = self._httpx
        if timeout_s <= 0:
            raise PlannerTimeoutError("no time left for a VLM attempt")
        body = {
            "model": self.model or "default",
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        try:
            with self._client.stream("POST", self.url, json=body, timeout=httpx.Timeout(timeout_s)) as resp:
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > self.max_reply_bytes:
                        raise VLMError(
                            f"VLM reply exceeds {self.max_reply_bytes} bytes; dropped", status=resp.status_code,
                            retryable=False,
                        )
                    if time.monotonic() > deadline:
                        raise PlannerTimeoutError(f"VLM reply still streaming after {timeout_s:.2f} s")
                    chunks.append(chunk)
                raw = b"".join(chunks)
                status = resp.status_code
                retry_after = _retry_after_s(resp.headers.get("retry-after"))
        except httpx.TimeoutException as exc:
            raise PlannerTimeoutError(f"VLM did not answer within {timeout_s:.2f} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise VLMError(f"VLM request to {self.url} failed: {type(exc).__name__}: {exc}") from exc
        latency = time.monotonic() - t0
        if status != 200:
            limit = image_limit_error(status, raw, messages)
            if limit is not None:
                raise limit
            snippet = raw[:200].decode("utf-8", "replace")
            retryable = status == 429 or status >= 500 or status == 408
            raise VLMError(f"VLM answered HTTP {status}: {snippet}", status=status, retryable=retryable,
                           retry_after_s=retry_after)
        try:
            envelope = json.loads(raw)
            choice = envelope["choices"][0]
            text = choice["message"]["content"]
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise VLMError(
                f"VLM reply is not a chat-completions JSON envelope ({type(exc).__name__}: {exc}): "
                f"{raw[:160].decode('utf-8', 'replace')!r}"
            ) from exc
        if isinstance(text, list):  # some servers return content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if not isinstance(text, str):
            raise VLMError(f"VLM message content is {type(text).__name__}, expected text")
        return ChatReply(text, finish if isinstance(finish, str) else None, latency)


# vLLM: "At most 1 image(s) may be provided in one prompt." (older: "... in one request.")
_MM_LIMIT = re.compile(r"at most (\d+) (image|video|audio)\(s\)", re.IGNORECASE)


def image_limit_error(status: int, raw: bytes, messages: list[dict]) -> VLMImageLimitError | None:
    """A VLMImageLimitError naming the vLLM flag to set, when a 4xx body says the prompt carried more
    images than the server allows; None for any other error.

    Why: vLLM's V0 engine allows one image per prompt unless started with --limit-mm-per-prompt, and
    three of the four tasks send two; its HTTP 400 is not retryable and, passed on raw, says nothing
    about which server flag fixes it.
    """
    if not 400 <= status < 500:
        return None
    text = raw[:2000].decode("utf-8", "replace")
    try:
        envelope = json.loads(text)
        err = envelope.get("error", envelope) if isinstance(envelope, dict) else {}
        said = str(err.get("message", text) if isinstance(err, dict) else err)
    except ValueError:
        said = text
    match = _MM_LIMIT.search(said)
    if match is None and "limit-mm-per-prompt" not in said and "limit_mm_per_prompt" not in said:
        return None
    sent = sum(1 for m in messages if isinstance(m.get("content"), list)
               for part in m["content"] if isinstance(part, dict) and part.get("type") == "image_url")
    need = max(sent, *(len(roles) for roles in TASK_IMAGES.values()))
    allowed = f"at most {match.group(1)} {match.group(2)}(s)" if match else "fewer images"
    return VLMImageLimitError(
        f"the VLM server accepts {allowed} per prompt but this request sends {sent}: start vLLM with "
        f"--limit-mm-per-prompt '{{\"image\": {need}}}' (vLLM before 0.9: --limit-mm-per-prompt image={need}); "
        f"the server said (HTTP {status}): {said[:300]}",
        status=status,
    )


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
