"""Operator commands received over DDS: validation, flood control and staleness.

Wire format (std_msgs/String, `data` is a JSON object):

    {"cmd": "start", "prompt": "grasp the red cube", "id": "c1", "sender": "9f2c...", "seq": 1,
     "session": "<from rt/dexgrasp/status>"}
    {"cmd": "stop"}                         protective stop (needs nothing else, never refused)
    {"cmd": "clear", ...}                   lift a latched protective stop (does NOT re-arm)
    {"cmd": "arm", ...}                     the operator re-enables motion (after clear, safe-off, link loss)
    {"cmd": "manual_bbox", "bbox": [x1, y1, x2, y2], ...}   box in head-image pixels

`id` (optional, <= 64 chars) is echoed in the status topic so a sender can match the result.
`sender` (random id), `seq` (grows per sender) and `session` (the runtime's nonce) are required
for every command but `stop`: see replay.py.
Nothing here touches DDS or the robot: `CommandGate` is the bounded, clock-driven buffer between
the DDS reader thread and the thread that hands commands to the runtime, so it is tested with a
FakeClock and exact counts.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from dataclasses import dataclass, field

from runtime.clock import Clock

COMMANDS = ("start", "stop", "clear", "arm", "manual_bbox")
MAX_COMMAND_BYTES = 4096
MAX_PROMPT_CHARS = 1000
MAX_ID_CHARS = 64
MAX_SEQ = 2**63 - 1
_ALLOWED_FIELDS = {
    "start": {"prompt"},
    "stop": set(),
    "clear": set(),
    "arm": set(),
    "manual_bbox": {"bbox"},
}
_COMMON_FIELDS = {"cmd", "id", "sender", "seq", "session"}


class CommandRejected(ValueError):
    """A command failed validation; `reason` says what was wrong, `cmd_id` echoes its id if known."""

    def __init__(self, reason: str, cmd_id: str | None = None, name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cmd_id = cmd_id
        self.name = name


@dataclass(frozen=True)
class Command:
    """A validated command. `t_received` is on the runtime's monotonic clock."""

    name: str
    args: dict
    cmd_id: str | None
    t_received: float
    source: str = "dds"
    sender: str | None = None
    seq: int | None = None
    session: str | None = None

    def as_submit_dict(self) -> dict:
        """What the runtime's submit_command receives: {"cmd", ...args, "id", "source"}."""
        return {"cmd": self.name, **self.args, "id": self.cmd_id, "source": self.source}


def parse_command(text: str | bytes, t_received: float, source: str = "dds") -> Command:
    """Validate one wire command; raises CommandRejected naming the problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandRejected(f"not UTF-8 text ({exc})") from exc
    if len(text.encode("utf-8")) > MAX_COMMAND_BYTES:
        raise CommandRejected(f"command is {len(text.encode('utf-8'))} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandRejected(f"not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(doc, dict):
        raise CommandRejected(f"expected a JSON object, got {type(doc).__name__}")
    cmd_id = doc.get("id")
    if cmd_id is not None and (not isinstance(cmd_id, str) or not 0 < len(cmd_id) <= MAX_ID_CHARS):
        raise CommandRejected(f"'id' must be a string of 1..{MAX_ID_CHARS} characters, got {cmd_id!r}")
    name = doc.get("cmd")
    if name not in COMMANDS:
        raise CommandRejected(f"unknown command {name!r}; expected one of {list(COMMANDS)}", cmd_id, None)
    extra = sorted(set(doc) - _COMMON_FIELDS - _ALLOWED_FIELDS[name])
    if extra:
        raise CommandRejected(f"'{name}' does not take field(s) {extra}", cmd_id, name)
    args: dict = {}
    if name == "start":
        args["prompt"] = _check_prompt(doc.get("prompt"), cmd_id)
    elif name == "manual_bbox":
        args["bbox"] = _check_bbox(doc.get("bbox"), cmd_id)
    sender = _check_token(doc.get("sender"), "sender", cmd_id, name)
    session = _check_token(doc.get("session"), "session", cmd_id, name)
    seq = doc.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ):
        raise CommandRejected(f"'seq' must be an integer in [0, 2^63), got {seq!r}", cmd_id, name)
    return Command(name, args, cmd_id, t_received, source, sender, seq, session)


def _check_token(value, field_name: str, cmd_id, name) -> str | None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS
                              or not value.isprintable()):
        raise CommandRejected(f"'{field_name}' must be a printable string of 1..{MAX_ID_CHARS} characters, "
                              f"got {value!r}", cmd_id, name)
    return value


def _check_prompt(prompt, cmd_id) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise CommandRejected(f"'start' needs a non-empty 'prompt' string, got {prompt!r}", cmd_id, "start")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise CommandRejected(f"'prompt' is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}", cmd_id, "start")
    if any(ord(c) < 32 and c not in "\t\n" for c in prompt):
        raise CommandRejected("'prompt' contains control characters", cmd_id, "start")
    return prompt.strip()


def _check_bbox(bbox, cmd_id) -> list[float]:
    ok = (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    )
    if not ok:
        raise CommandRejected(f"'bbox' must be 4 finite numbers [x1, y1, x2, y2], got {bbox!r}", cmd_id, "manual_bbox")
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if min(x1, y1) < 0 or x2 <= x1 or y2 <= y1:
        raise CommandRejected(
            f"'bbox' {bbox} is not a box: need 0 <= x1 < x2 and 0 <= y1 < y2 (pixels)", cmd_id, "manual_bbox"
        )
    return [x1, y1, x2, y2]


@dataclass
class GateCounters:
    received: int = 0
    accepted: int = 0
    rejected_invalid: int = 0
    rejected_replay: int = 0  # duplicate / old seq, another session, or no sender/seq/session
    dropped_flood: int = 0
    dropped_stale: int = 0
    dropped_queue_full: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CommandGate:
    """Bounded, rate-limited, age-checked buffer of validated commands.

    `offer()` never blocks: it drops (and counts) commands beyond the token bucket or the queue
    bound. `stop` bypasses the bucket and the age limit and jumps the queue: a protective stop is
    always safe to apply and must never be lost in a flood. `pop()` returns the oldest command that
    is still young enough (stale ones are dropped and counted), or None.
    """

    capacity: int = 16
    max_age_s: float = 2.0
    rate_hz: float = 10.0
    burst: int = 20
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.counters = GateCounters()
        self._queue: deque[Command] = deque()
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._t_tokens = self.clock.now()
        self._stale: deque[Command] = deque(maxlen=self.capacity)

    def offer(self, cmd: Command, age_s: float = 0.0) -> str | None:
        """Queue `cmd`. Its age is measured on this side, by the monotonic clock: from
        `cmd.t_received` (stamped when the sample was taken off the wire) plus `age_s`, a delay a
        link already knows on its own clock (0 for DDS: a sender's timestamp is never trusted).
        Returns None or the drop reason."""
        with self._lock:
            self.counters.received += 1
            if cmd.name == "stop":
                self._queue.appendleft(cmd)
                while len(self._queue) > self.capacity:
                    self._queue.pop()
                    self.counters.dropped_queue_full += 1
                return None
            now = self.clock.now()
            age_s = age_s + max(0.0, now - cmd.t_received)
            if age_s > self.max_age_s:
                self.counters.dropped_stale += 1
                return f"stale: received {age_s:.3f} s ago (limit {self.max_age_s} s)"
            self._tokens = min(float(self.burst), self._tokens + (now - self._t_tokens) * self.rate_hz)
            self._t_tokens = now
            if self._tokens < 1.0:
                self.counters.dropped_flood += 1
                return f"flood: more than {self.rate_hz} commands/s (burst {self.burst})"
            if len(self._queue) >= self.capacity:
                self.counters.dropped_queue_full += 1
                return f"queue full ({self.capacity} commands waiting)"
            self._tokens -= 1.0
            self._queue.append(cmd)
            return None

    def pop(self) -> Command | None:
        """The next command to apply, or None. Never blocks."""
        with self._lock:
            while self._queue:
                cmd = self._queue.popleft()
                if cmd.name != "stop" and self.clock.now() - cmd.t_received > self.max_age_s:
                    self.counters.dropped_stale += 1
                    self._stale.append(cmd)
                    continue
                return cmd
            return None

    def take_stale(self) -> list[Command]:
        """Commands that `pop()` dropped for age since the last call (so their senders can be told)."""
        with self._lock:
            out = list(self._stale)
            self._stale.clear()
            return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    def reject(self, replay: bool = False) -> None:
        with self._lock:
            self.counters.received += 1
            if replay:
                self.counters.rejected_replay += 1
            else:
                self.counters.rejected_invalid += 1

    def accepted(self) -> None:
        with self._lock:
            self.counters.accepted += 1
