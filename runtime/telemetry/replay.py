"""Replay protection for operator commands, without trusting anyone's wall clock.

A command that moves the robot or lifts a stop must be new: it carries the runtime's `session`
(a random nonce the runtime publishes on rt/dexgrasp/status, fresh at every start), the sender's
random `sender` id and a per-sender `seq` that only grows. So a captured command replayed later is
refused: in the same run its (sender, seq) was already seen; in another run its session is wrong.
Clocks are never compared (hosts disagree, and an attacker can stamp anything), and the age limit
is measured on arrival by the receiver's monotonic clock (commands.CommandGate).

`stop` is exempt: a protective stop is always safe to apply, so it is never refused for being
a duplicate or for lacking these fields.

This is replay protection, not authentication: without DDS-Security anyone on the network can
read the session and make new commands (see config.DdsConfig.insecure_commands).
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

EXEMPT = frozenset({"stop"})
MAX_SENDERS = 1024


def new_session() -> str:
    """A fresh runtime session nonce (64 random bits, hex)."""
    return secrets.token_hex(8)


class ReplayGuard:
    """Per-sender highest sequence number seen in this session; thread-safe, bounded.

    At most `max_senders` senders are remembered (least recently active evicted, counted): each
    `dexgrasp ctl` call is a new sender, so the table would otherwise grow with every command.
    """

    def __init__(self, session: str, max_senders: int = MAX_SENDERS) -> None:
        self.session = session
        self.max_senders = max_senders
        self._last: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def check(self, name: str, sender: str | None, seq: int | None, session: str | None) -> str | None:
        """None if the command is new (and record it), else why it is refused."""
        if name in EXEMPT:
            return None
        if sender is None or seq is None or session is None:
            return (f"'{name}' needs 'sender', 'seq' and 'session' (replay protection; the session is "
                    f"published on rt/dexgrasp/status, `dexgrasp ctl` adds all three)")
        if session != self.session:
            return (f"session {session!r} is not this runtime's ({self.session!r}): a command for another "
                    "run (replayed, or sent before the runtime restarted)")
        with self._lock:
            last = self._last.get(sender)
            if last is not None and seq <= last:
                return f"replay: seq {seq} from sender {sender!r} is not newer than {last} (duplicate or replayed)"
            self._last[sender] = seq
            self._last.move_to_end(sender)
            while len(self._last) > self.max_senders:
                self._last.popitem(last=False)
                self.evicted += 1
        return None
