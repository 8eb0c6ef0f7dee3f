"""Typed messages across the control-process boundary (runtime.execution.loop_process).

Why typed: the boundary used to speak string-tagged tuples ("chunk", c), ("stats", dict): a typo or
a changed field only showed up as a KeyError in a link thread, which then died silently. Each
message is now a small frozen dataclass, pickled through the same pipe, and every receiver goes
through `MessageCheck.accept`: anything that is not a message of this protocol version, or not one
this side expects, is counted and logged (rate-limited) and dropped. Neither side ever crashes on
a message it does not understand, and the count shows up in the report.

parent -> child: ChunkMsg, RequestDoneMsg, FrameMsg, CommandMsg, LinkCommandMsg, StopMsg
child -> parent: ReadyMsg | ErrorMsg (first message), StateMsg, SentMsg, RequestMsg, EventMsg,
                 StatsMsg, LinkAckMsg, ReportMsg
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from runtime.execution.chunk import TimedChunk
from runtime.robot.link import JointState

log = logging.getLogger(__name__)

# Bump when a message's fields change meaning: both sides come from one install, so a mismatch
# means a stale child (or a foreign writer on the pipe), and its messages are refused.
PROTOCOL_VERSION = 2  # 2: LinkCommandMsg / LinkAckMsg; StatsMsg carries the stop latch and the cause


@dataclass(frozen=True)
class Message:
    """Base of every boundary message; `version` travels with each one (checked on receipt)."""

    version: int = field(default=PROTOCOL_VERSION, kw_only=True)


# ---- parent -> child ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkMsg(Message):
    """A new chunk from the policy worker, for the child's chunks mailbox (stamped with chunk.t_obs)."""

    chunk: TimedChunk


@dataclass(frozen=True)
class RequestDoneMsg(Message):
    """The policy worker finished the chunk request the child forwarded (with or without a chunk)."""


@dataclass(frozen=True)
class FrameMsg(Message):
    """Capture time of the newest head frame: the loop's perception age."""

    t_capture: float


@dataclass(frozen=True)
class CommandMsg(Message):
    """An operator command for ControlLoop.submit (enable, disable, home, stop, clear, arm...)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class LinkOp(str, Enum):
    """The RobotLink commands the parent may give the child's link (ControlProcessLink)."""

    ARM = "arm"
    DISARM = "disarm"
    PROTECTIVE_STOP = "protective_stop"
    CLEAR_STOP = "clear_stop"


@dataclass(frozen=True)
class LinkCommandMsg(Message):
    """A RobotLink command from the parent's ControlProcessLink; answered by LinkAckMsg(seq)."""

    op: LinkOp
    seq: int


@dataclass(frozen=True)
class StopMsg(Message):
    """Hold, disarm, close the bridge, send the report and exit."""


# ---- child -> parent ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadyMsg(Message):
    """First message after a successful start: the child's real-time thread setup."""

    setup: dict


@dataclass(frozen=True)
class ErrorMsg(Message):
    """First message when the child could not open its bridge (the parent raises it)."""

    text: str


@dataclass(frozen=True)
class StateMsg(Message):
    """One robot state the loop read, as the runtime's one joint-state type."""

    state: JointState


@dataclass(frozen=True)
class SentMsg(Message):
    """A joint-position command the loop sent (telemetry: what actually went to the robot)."""

    positions: np.ndarray
    t_target: float | None


@dataclass(frozen=True)
class RequestMsg(Message):
    """The loop asks for the next chunk (at child time t; one clock per machine)."""

    t: float


@dataclass(frozen=True)
class EventMsg(Message):
    """Anything else the loop published: ("status", dict), ("episode_event", dict), ..."""

    kind: str
    payload: Any = None


@dataclass(frozen=True)
class StatsMsg(Message):
    """Periodic loop progress and the bridge's counters and link flags."""

    progress: dict
    bridge: dict
    link_up: bool
    armed: bool
    needs_rearm: bool
    stopped: bool = False  # the loop's protective-stop latch
    cause: str = ""  # why the link is not ok (empty when it is)


@dataclass(frozen=True)
class LinkAckMsg(Message):
    """The child's answer to LinkCommandMsg `seq`: accepted (error empty) or refused, naming the
    error class the parent raises (NotArmedError, DeviceNotConnectedError)."""

    seq: int
    error: str = ""
    error_type: str = ""


@dataclass(frozen=True)
class ReportMsg(Message):
    """The loop's final report (always sent, even after a failure)."""

    report: dict


TO_CHILD: tuple[type[Message], ...] = (ChunkMsg, RequestDoneMsg, FrameMsg, CommandMsg, LinkCommandMsg, StopMsg)
TO_PARENT: tuple[type[Message], ...] = (ReadyMsg, ErrorMsg, StateMsg, SentMsg, RequestMsg, EventMsg, StatsMsg,
                                        LinkAckMsg, ReportMsg)


class MessageCheck:
    """Receipt check for one side: `accept(obj)` returns the message or None (counted, logged)."""

    LOG_FIRST = 5  # then one line per LOG_EVERY, so a flood cannot flood the log too
    LOG_EVERY = 1000

    def __init__(self, side: str, expected: tuple[type[Message], ...]) -> None:
        self.side = side
        self.expected = expected
        self.unknown = 0
        self.last_unknown = ""

    def accept(self, obj: object) -> Message | None:
        if isinstance(obj, self.expected) and getattr(obj, "version", None) == PROTOCOL_VERSION:
            return obj
        if isinstance(obj, Message):
            why = f"{type(obj).__name__} version {getattr(obj, 'version', '?')}"
            why += "" if isinstance(obj, self.expected) else " (not expected here)"
            why += f" (this side speaks {PROTOCOL_VERSION})" if obj.version != PROTOCOL_VERSION else ""
        else:
            why = f"not a boundary message: {type(obj).__name__} {_short(obj)}"
        self.refuse(why)
        return None

    def refuse(self, why: str) -> None:
        """Count and log (rate-limited) one dropped message, e.g. one that did not even unpickle."""
        self.unknown += 1
        self.last_unknown = why
        if self.unknown <= self.LOG_FIRST or self.unknown % self.LOG_EVERY == 0:
            log.warning("%s: dropped unknown message #%d: %s", self.side, self.unknown, why)


def _short(obj: object, n: int = 60) -> str:
    try:
        text = repr(obj)
    except Exception:  # noqa: BLE001 - a repr that raises is still only a dropped message
        text = "<unrepresentable>"
    return text if len(text) <= n else text[: n - 3] + "..."
