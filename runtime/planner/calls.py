"""Planner calls as the runtime sees them: submit now, poll or wait later, never block control.

`PlannerCall` is a handle returned at once by `submit`; it resolves exactly once, to a
`PlannerReply` that is either ok (with the task's validated result) or an error with a code from
`wire.ERROR_CODES` and a human-readable reason. Timeouts are replies too (code "timeout"), so the
episode logic handles every outcome in one place and nothing raises into the control path.

Result shapes (PlannerReply.result):
  instruction: {"instruction": str}
  bbox:        {"bbox": [x1, y1, x2, y2] (int pixels of the original frame), "label": str,
                "image_id": str, "image_size": [w, h]}
  verify:      {"success": bool, "reasoning": str}
  complete:    {"completed": bool, "reasoning": str}
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from runtime.errors import DexGraspError


class PlannerCallError(DexGraspError, RuntimeError):
    """Raised only by `PlannerReply.raise_for_error()` (the CLI); the runtime inspects replies instead."""


class LinkState(str, Enum):
    """How the planner link is doing, for status displays and the episode logic."""

    CONNECTING = "connecting"    # no handshake answer yet
    CONNECTED = "connected"      # handshake done, heartbeats answered, last request fine
    DEGRADED = "degraded"        # server answers heartbeats but requests fail (VLM down, busy, invalid)
    UNREACHABLE = "unreachable"  # no answer to handshake/heartbeats within the liveness window
    STOPPED = "stopped"


@dataclass(frozen=True)
class PlannerReply:
    request_id: str
    episode_id: str
    task: str
    ok: bool
    result: dict = field(default_factory=dict)
    error_code: str | None = None
    error_message: str = ""
    timing: dict = field(default_factory=dict)
    rtt_s: float | None = None

    def raise_for_error(self) -> PlannerReply:
        if not self.ok:
            raise PlannerCallError(f"planner {self.task} failed ({self.error_code}): {self.error_message}")
        return self


class PlannerCall:
    """A pending request. `reply()` polls (never blocks); `wait(timeout_s)` blocks up to timeout_s."""

    def __init__(self, request_id: str, episode_id: str, task: str, deadline: float,
                 image_ids: dict[str, str] | None = None,
                 image_sizes: dict[str, tuple[int, int]] | None = None) -> None:
        self.request_id = request_id
        self.episode_id = episode_id
        self.task = task
        self.deadline = deadline
        self.image_ids = dict(image_ids or {})
        self.image_sizes = dict(image_sizes or {})
        self._event = threading.Event()
        self._reply: PlannerReply | None = None
        self._lock = threading.Lock()

    def resolve(self, reply: PlannerReply) -> bool:
        """Set the outcome once; later resolutions (a late answer after a timeout) are ignored -> False."""
        with self._lock:
            if self._reply is not None:
                return False
            self._reply = reply
        self._event.set()
        return True

    def fail(self, code: str, message: str) -> bool:
        return self.resolve(PlannerReply(self.request_id, self.episode_id, self.task, False,
                                         error_code=code, error_message=message))

    def done(self) -> bool:
        return self._event.is_set()

    def reply(self) -> PlannerReply | None:
        return self._reply

    def wait(self, timeout_s: float | None = None) -> PlannerReply | None:
        self._event.wait(timeout_s)
        return self._reply


def check_submit(task: str, images: dict, timeout_s: float) -> tuple[str, ...]:
    """Argument checks shared by every Planner.submit; returns the image roles the task needs.
    Raises ValueError (a programming error, not a link problem) naming what is wrong."""
    from runtime.planner.wire import TASK_IMAGES, TASKS

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    roles = TASK_IMAGES[task]
    missing = [r for r in roles if r not in images]
    if missing:
        raise ValueError(f"task '{task}' needs images {list(roles)}, missing {missing}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    return roles


class Planner(Protocol):
    """What the episode runner needs from a planner: the ZMQ client and the in-process one both fit.

    `submit` returns at once (it only queues); `images` maps role ("head", "initial_head", "wrist")
    to HxWx3 uint8 BGR frames. `state` is the link state.
    """

    @property
    def state(self) -> LinkState: ...

    def submit(self, task: str, images: dict[str, np.ndarray], *, episode_id: str, timeout_s: float,
               prompt: str | None = None, instruction: str | None = None) -> PlannerCall: ...

    def cancel_episode(self, episode_id: str) -> int: ...
