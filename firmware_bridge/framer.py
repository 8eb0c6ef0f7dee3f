"""Receive framer: bytes in, decoded messages or rejections out. Same rules as dgb_framer.c.

A bounded buffer (MAX_ENCODED bytes): more than that without a delimiter is reported once as
ERR_OVERSIZE and the rest is discarded until the next 0x00 (a resync), so garbage of any length
costs one buffer and the next good frame parses.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge import protocol as P


@dataclass(frozen=True)
class FrameError:
    code: P.ErrorCode
    detail: str


class Framer:
    """Not thread-safe: owned by the one reader thread."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.frames_ok = 0
        self.frames_rejected = 0
        self.resyncs = 0
        self.errors_by_code: dict[str, int] = {}

    def feed(self, data: bytes) -> list[P.Message | FrameError]:
        """Consume `data`; return every completed frame or rejection, in order."""
        events: list[P.Message | FrameError] = []
        start = 0
        n = len(data)
        while start < n:
            z = data.find(0, start)
            chunk = data[start:] if z < 0 else data[start:z]
            if not self._discarding:
                room = P.MAX_ENCODED - len(self._buf)
                if len(chunk) > room:
                    self._buf.clear()
                    self._discarding = True
                    self.resyncs += 1
                    events.append(self._reject(P.ErrorCode.ERR_OVERSIZE, f"more than {P.MAX_ENCODED} bytes without a delimiter"))
                else:
                    self._buf += chunk
            if z < 0:
                break
            start = z + 1
            if self._discarding:
                self._discarding = False
                continue
            if not self._buf:
                continue
            frame = bytes(self._buf)
            self._buf.clear()
            try:
                events.append(P.decode(frame))
                self.frames_ok += 1
            except P.DecodeError as exc:
                events.append(self._reject(exc.code, str(exc)))
        return events

    def _reject(self, code: P.ErrorCode, detail: str) -> FrameError:
        self.frames_rejected += 1
        self.errors_by_code[code.name] = self.errors_by_code.get(code.name, 0) + 1
        return FrameError(code, detail)
