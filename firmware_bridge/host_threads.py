"""The two background threads of BridgeHost, as a mixin: what the reader thread does with every
frame (state mailbox, answers to waiting requests, session-change detection, counters) and what
the supervisor thread does (link-loss detection, reopen, re-handshake, heartbeats while disarmed).

Split from host.py only to keep files small; these methods use BridgeHost's attributes and locks.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.errors import DeviceNotConnectedError, DeviceRejectedError, ProtocolMismatchError
from firmware_bridge.framer import FrameError
from firmware_bridge.link import SerialLink
from firmware_bridge.state import State
from runtime.clock import Clock
from runtime.rate import Rate

log = logging.getLogger("firmware_bridge.host")


class HostThreadsMixin:
    # ---- internals: receiving (reader thread) ----------------------------------------------------

    def _on_message(self, msg: P.Message, t_rx: float) -> None:
        with self._lock:
            self._c["frames_rx"] += 1
            self._last_rx = t_rx
            if msg.type is P.MsgType.HELLO_ACK:
                self._last_dev_seq = msg.seq  # here, in arrival order (not in the waiting thread)
                p = self._pending.get(("hello", msg.body.host_nonce))
                if p is not None:
                    p.reply = msg
                    p.event.set()
                return
            if self._session is not None and msg.session_id != self._session:
                self._new_session_seen(msg.session_id)
                return
            if self._last_dev_seq is not None and msg.seq > self._last_dev_seq + 1:
                self._c["lost_rx_frames"] += msg.seq - self._last_dev_seq - 1
            self._last_dev_seq = msg.seq
            if msg.type in (P.MsgType.ACK, P.MsgType.FAULT):
                if msg.type is P.MsgType.FAULT:
                    self._count_fault(msg.body)
                    self._check_fault_origin(msg.body)
                key = msg.body.acked_seq if msg.type is P.MsgType.ACK else msg.body.rejected_seq
                p = self._pending.get(key)
                if p is not None:
                    p.reply = msg
                    p.event.set()
                return
            if msg.type is not P.MsgType.STATE:
                return
            b: P.StateBody = msg.body
            self._c["states"] += 1
            self._check_applied_origin(b.last_applied_seq)
            t_sent = self._send_times.pop(b.last_applied_seq, None)
            if t_sent is not None:
                self._c["commands_confirmed"] += 1
            mode = P.Mode(b.mode) if b.mode in P.Mode._value2member_map_ else P.Mode.DISARMED
            if self._armed and mode in (P.Mode.DISARMED, P.Mode.SAFE_OFF, P.Mode.PSTOP):
                log.warning("%s: firmware left motion (%s); re-arm required", self.name, mode.name)
                self._armed = False
                self._needs_rearm = True
        if t_sent is not None:
            self.rtt.add(t_rx - t_sent)
        self.state.put(
            State(msg.session_id, b.mcu_time_us, np.array(b.positions), np.array(b.velocities),
                  np.array(b.efforts), mode, b.flags, b.fault_flags, b.last_error, b.rx_errors,
                  b.last_applied_seq, b.echo_host_time_us, t_rx),
            t_capture=t_rx,
        )

    def _count_fault(self, f: P.Fault) -> None:
        self._c["device_faults"] += 1
        name = P.ErrorCode.name_of(f.error)
        self.device_fault_codes[name] = self.device_fault_codes.get(name, 0) + 1
        self.last_device_fault = f

    # ---- second writer (another process on the port) -------------------------------------------

    def _check_fault_origin(self, f: P.Fault) -> None:
        """Lock held. ERR_REPLAY / ERR_SESSION for a frame of this session cannot come from this host
        (its seqs only grow and carry the session it handshook): someone else writes to the port."""
        if f.error not in (P.ErrorCode.ERR_REPLAY, P.ErrorCode.ERR_SESSION) or not self._handshaked:
            return
        if f.rejected_seq > self._hello_seq or f.rejected_seq == 0:
            self._second_writer(f"firmware answered {P.ErrorCode.name_of(f.error)} to seq {f.rejected_seq}")

    def _check_applied_origin(self, applied_seq: int) -> None:
        """Lock held. The firmware applied a command with a seq this host never issued."""
        prev, self._last_applied_seen = self._last_applied_seen, applied_seq
        if prev is not None and applied_seq != prev and applied_seq > self._seq and self._handshaked:
            self._second_writer(f"firmware applied seq {applied_seq}, this host has only sent up to {self._seq}")

    def _second_writer(self, why: str) -> None:
        """Lock held (reader thread): stop commanding, latch the report, and have the supervisor
        re-handshake (our seqs may be behind the intruder's) and latch a protective stop."""
        self._c["second_writer"] += 1
        if self.second_writer is None:
            self.second_writer = why
            log.error("%s: second writer on %s: %s; protective stop, re-arm refused until clear_stop()",
                      self.name, self.port, why)
        if self._armed:
            self._needs_rearm = True
        self._armed = False
        self._needs_rearm = True
        self._intrusion_stop_pending = True

    def _intrusion_stop(self) -> None:
        """Supervisor thread: HELLO (any seq is accepted, motion ends) then PSTOP (latched)."""
        self._handshake(deadline=time.monotonic() + 0.5)
        self._send_request(P.MsgType.PSTOP, P.Empty())
        with self._lock:
            self._intrusion_stop_pending = False
            self._c["intrusion_stops"] += 1

    def _new_session_seen(self, session: int) -> None:
        """Called with the lock held: a frame from another firmware session (reset or restart)."""
        if not self._handshaked:
            return
        log.warning("%s: firmware session changed 0x%08x -> 0x%08x: re-handshake, re-arm required",
                    self.name, self._session, session)
        self._handshaked = False
        self._needs_rearm = True  # a new session never inherits an arm
        self._armed = False
        self._needs_handshake = True
        self._ready.clear()
        self._c["session_changes"] += 1

    def _on_frame_error(self, err: FrameError) -> None:
        with self._lock:
            if err.code is P.ErrorCode.ERR_CRC:
                self._c["crc_errors"] += 1
            elif err.code in (P.ErrorCode.ERR_OVERSIZE, P.ErrorCode.ERR_COBS, P.ErrorCode.ERR_SHORT):
                self._c["resyncs"] += 1
            else:
                self._c["rejected_rx"] += 1

    def _on_disconnect(self, exc: Exception) -> None:
        with self._lock:
            self._link_lost = True
            self._link_up = False
            self._handshaked = False
            if self._armed:
                self._needs_rearm = True
            self._armed = False
            self._ready.clear()

    # ---- internals: link management (supervisor thread) -------------------------------------------

    def _open_link(self) -> None:
        link = SerialLink(self.port, self._on_message, self._on_frame_error, self._on_disconnect,
                          clock=self.clock, baudrate=self.baudrate, write_timeout_s=self.write_timeout_s,
                          name=self.name)
        link.open()
        with self._lock:
            self._link = link
            self._link_lost = False
            self._last_dev_seq = None

    def _close_link(self) -> None:
        link = self._link
        self._link = None
        if link is not None:
            link.close()

    def _supervise(self) -> None:
        # Paced on the real clock: this thread waits in real time even when tests inject a FakeClock.
        rate = Rate(100.0, Clock(), name=f"{self.name}-supervisor")
        outage = False
        next_attempt = 0.0
        while not self._stop.is_set():
            rate.sleep()
            now = self.clock.now()
            with self._lock:
                silent = now - self._last_rx > self.timeout_s
                lost, needs_hs = self._link_lost, self._needs_handshake
                idle = now - self._last_tx >= self.heartbeat_period_s
                heartbeat = self._handshaked and not self._armed and idle and not lost
            if (silent or lost) and not outage:
                outage = True
                with self._lock:
                    self._c["timeouts"] += 1
                    self._link_up = False
                log.warning("%s: link to %s down (%s)", self.name, self.port, "port lost" if lost else "silent")
            if self._intrusion_stop_pending and not lost:
                try:
                    self._intrusion_stop()
                except (DeviceNotConnectedError, DeviceRejectedError, ProtocolMismatchError) as exc:
                    log.warning("%s: protective stop after a second writer failed (retrying): %s", self.name, exc)
            if not self.auto_reconnect or now < next_attempt:
                continue
            try:
                if lost:
                    next_attempt = now + 0.2
                    self._close_link()
                    self._open_link()
                    needs_hs = True
                if needs_hs or (outage and not silent):
                    self._handshake(deadline=time.monotonic() + 0.5)
                    if outage:
                        with self._lock:
                            self._c["reconnects"] += 1
                    outage = False
                elif heartbeat:
                    with self._tx_lock:
                        self._send(P.Message(P.MsgType.HEARTBEAT, self._next_seq(), self._session or 0,
                                             P.Heartbeat(int(now * 1e6))), now)
                if outage and not silent and not lost:
                    outage = False
            except ProtocolMismatchError as exc:
                log.error("%s: %s", self.name, exc)
                next_attempt = now + 1.0
            except (DeviceNotConnectedError, DeviceRejectedError) as exc:
                log.debug("%s: reconnect attempt failed: %s", self.name, exc)
                next_attempt = now + 0.2
