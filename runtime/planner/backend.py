"""What every planner backend implements, and the errors they raise.

A backend answers one validated TaskRequest before an absolute deadline on the server's clock and
returns the task's result map (see runtime/planner/__init__.py for the result shapes). It raises:

- ReplyError (runtime.planner.replies) when the model's answer failed validation,
- VLMError when the model could not be reached / kept failing (HTTP 429/5xx, connection errors),
- PlannerTimeoutError when the deadline passed.

The VLM backend (vlm_backend.py) and the local OpenCV backend (local_backend.py) both implement it,
so the ZeroMQ server and in-process callers do not care which one runs.
"""

from __future__ import annotations

from typing import Protocol

from runtime.errors import DexGraspError
from runtime.planner.wire import TaskRequest


class VLMError(DexGraspError, ConnectionError):
    """The VLM endpoint failed (HTTP status, connection refused, bad envelope) after bounded retries."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class VLMImageLimitError(VLMError):
    """The VLM server refuses the number of images a task sends (vLLM's --limit-mm-per-prompt).

    A server configuration problem: never retried, and the message names the flag to set.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status=status, retryable=False)


class PlannerTimeoutError(DexGraspError, TimeoutError):
    """A planner request's deadline passed before a valid answer arrived."""


class PlannerBackend(Protocol):
    """One planner: `run` blocks the calling (worker) thread until a result or the deadline.

    `deadline` is absolute on the backend's clock (`clock.now()` seconds). Implementations must
    return or raise by then (give or take one network timeout granularity), never later.
    """

    name: str

    def run(self, request: TaskRequest, deadline: float) -> dict: ...

    def close(self) -> None: ...
