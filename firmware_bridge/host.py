"""Host side of the firmware bridge: what the runtime's control loop talks to.

`BridgeHost` owns the serial link, runs a reader thread (frames -> state mailbox, answers, counters)
and a supervisor thread (link-loss detection, reconnect, re-handshake, heartbeats while disarmed).
Motion is only ever sent to a firmware session this host has handshaken AND armed: after a firmware
reset (a new session id) or a reconnect the host re-handshakes by itself but never re-arms; the
caller sees `needs_rearm` and must call `arm()` again.

Blocking: `connect`, `arm`, `disarm`, `protective_stop`, `clear_stop` wait for the firmware's answer
(at most `request_timeout_ms` per attempt, `request_retries` attempts). `send_targets` and
`send_trajectory` never wait for an answer; they block only on the serial write (at most
`write_timeout_ms`, default 100 ms, and only when the device stops reading: then they raise
DeviceNotConnectedError).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.errors import (
    CommandError,
    DeviceNotConnectedError,
    DeviceRejectedError,
    EnvelopeError,
    NotArmedError,
    ProtocolMismatchError,
    SecondWriterError,
)
from firmware_bridge.host_threads import HostThreadsMixin
from firmware_bridge.joints import JointLimits
from firmware_bridge.link import SerialLink
from firmware_bridge.state import State
from runtime.clock import Clock
from runtime.errors import ConfigError
from runtime.mailbox import Mailbox
from runtime.robot.link import JointState
from runtime.stats import LatencyStats

log = logging.getLogger(__name__)

__all__ = ["BridgeHost", "State"]


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: P.Message | None = None


class BridgeHost(HostThreadsMixin):
    """Thread-safe host end of the serial protocol. Use as a context manager::

        with BridgeHost("/dev/ttyACM0") as bridge:     # connect(): open + handshake
            bridge.arm()
            sent = bridge.send_targets(q, t_target=None)  # what was actually sent (clamped)
            state = bridge.latest_state(max_age_s=0.01)    # a runtime.robot.link.JointState
    """

    def __init__(
        self,
        port: str,
        clock: Clock | None = None,
        joint_names=None,
        limits: JointLimits | None = None,
        expected_version: int = P.PROTOCOL_VERSION,
        timeout_ms: float = 200.0,
        request_timeout_ms: float = 150.0,
        request_retries: int = 3,
        auto_reconnect: bool = True,
        heartbeat_hz: float = 20.0,
        write_timeout_ms: float = 100.0,
        name: str = "bridge",
        baudrate: int = 2_000_000,
    ) -> None:
        self.port = port
        self.baudrate = int(baudrate)  # the serial port is opened at this rate (config: bridge.baudrate)
        self.clock = clock or Clock()
        self.limits = limits or JointLimits.default()
        if joint_names is not None:
            self.limits = JointLimits(tuple(joint_names), self.limits.lower, self.limits.upper,
                                      self.limits.max_velocity, self.limits.max_acceleration)
        self.expected_version = int(expected_version)
        self.timeout_s = timeout_ms / 1e3
        self.request_timeout_s = request_timeout_ms / 1e3
        self.request_retries = max(1, int(request_retries))
        self.auto_reconnect = auto_reconnect
        self.heartbeat_period_s = 1.0 / heartbeat_hz if heartbeat_hz > 0 else float("inf")
        self.write_timeout_s = write_timeout_ms / 1e3
        self.name = name
        self.state: Mailbox[State] = Mailbox(f"{name}.state", self.clock)  # raw reports
        self._joint_state: tuple[int, JointState] | None = None  # latest_state()'s conversion of the newest
        self._source = f"serial {port}"
        self.device_info: P.HelloAck | None = None
        self.firmware_limits: JointLimits | None = None  # what the firmware reported it enforces
        self._hello_seq = 0  # seq of the HELLO that opened the current session
        self.rtt = LatencyStats(200_000)
        self._lock = threading.RLock()
        self._request_lock = threading.Lock()  # one request/answer exchange at a time
        self._tx_lock = threading.RLock()  # seq allocation + write: seqs reach the wire in order
        self._pending: dict[int, _Pending] = {}
        self._link: SerialLink | None = None
        self._seq = 0
        self._session: int | None = None
        self._handshaked = False
        self._armed = False
        self._needs_rearm = False
        self._needs_handshake = False
        self._link_lost = False
        self._link_up = False
        self._last_rx = -float("inf")
        self._last_tx = -float("inf")
        self._last_dev_seq: int | None = None
        self._send_times: dict[int, float] = {}
        self._send_order: deque[int] = deque()
        self._stop = threading.Event()
        self._ready = threading.Event()  # set while a session is handshaken
        self._supervisor: threading.Thread | None = None
        self._c = dict(frames_tx=0, frames_rx=0, crc_errors=0, resyncs=0, rejected_rx=0, timeouts=0,
                       reconnects=0, session_changes=0, lost_rx_frames=0, commands_sent=0,
                       commands_confirmed=0, device_faults=0, states=0, second_writer=0, intrusion_stops=0)
        self.device_fault_codes: dict[str, int] = {}
        self.last_sent_seq = 0  # seq of the last motion command written (matches --log-applied)
        self.last_device_fault: P.Fault | None = None
        # Set (one line, why) when another writer was seen on the port; cleared only by clear_stop().
        self.second_writer: str | None = None
        self._intrusion_stop_pending = False
        self._last_applied_seen: int | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> BridgeHost:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self, timeout_s: float = 2.0) -> P.HelloAck:
        """Open the port (exclusive), handshake, wait for the first state. Blocks up to ~2x `timeout_s`.
        Raises DeviceNotConnectedError (port missing/busy, no answer) or ProtocolMismatchError."""
        self._open_link()
        try:
            ack = self._handshake(deadline=time.monotonic() + timeout_s)
            # Return with a state in the mailbox, so latest_state() works right away.
            if self.state.wait_newer(0, timeout_s) is None:
                raise DeviceNotConnectedError(f"{self.name}: {self.port} handshakes but sends no state reports")
        except BaseException:
            self._close_link()
            raise
        if self._supervisor is None:
            self._stop.clear()
            self._supervisor = threading.Thread(target=self._supervise, name=f"{self.name}-supervisor", daemon=True)
            self._supervisor.start()
        return ack

    def close(self, timeout_s: float = 1.0) -> None:
        """Disarm (best effort, one attempt), stop the threads (joined with a timeout), close the port."""
        was_armed = self._armed
        with self._lock:
            self._armed = False
        if was_armed and self._link_up:
            try:
                self._send_request(P.MsgType.DISARM, P.Empty(), retries=1)
            except Exception as exc:  # noqa: BLE001 - closing must go on; report what happened
                log.warning("%s: disarm on close failed: %s", self.name, exc)
        self._stop.set()
        sup = self._supervisor
        if sup is not None and sup is not threading.current_thread():
            sup.join(timeout_s)
            if sup.is_alive():
                log.warning("%s: supervisor thread still alive after %.1f s", self.name, timeout_s)
        self._supervisor = None
        self._close_link()
        with self._lock:
            self._armed = False
            self._link_up = False

    # ---- commands ----------------------------------------------------------------------------

    def arm(self) -> None:
        """The explicit operator re-arm: enable motion in the current session (blocks for the
        answer), clears `needs_rearm`. Nothing in the bridge calls it by itself: not a reconnect,
        a new session, a safe-off nor `clear_stop()`. Refused (SecondWriterError) while a second
        writer is latched, and by the firmware (ERR_PSTOP) while its protective stop is."""
        if self.second_writer is not None:
            raise SecondWriterError(f"{self.name}: not arming: second writer on {self.port} ({self.second_writer}); "
                                    "remove it, clear_stop() to acknowledge, then arm()")
        self._require_session("arm")
        self._send_request(P.MsgType.ARM, P.Empty())
        with self._lock:
            self._armed = True
            self._needs_rearm = False

    def disarm(self) -> None:
        """Disable motion: the firmware decelerates within its limits and holds."""
        with self._lock:
            self._armed = False
        self._require_session("disarm")
        self._send_request(P.MsgType.DISARM, P.Empty())

    def protective_stop(self) -> None:
        """Latch a protective stop in the firmware (it stays latched until clear_stop + arm)."""
        with self._lock:
            self._armed = False
            self._needs_rearm = True
        self._require_session("protective_stop")
        self._send_request(P.MsgType.PSTOP, P.Empty())

    def clear_stop(self) -> None:
        """Clear the protective-stop latch (the firmware goes PSTOP -> DISARMED) and acknowledge a
        second-writer report. Never re-arms: motion still needs an explicit `arm()`."""
        with self._lock:
            self._armed = False
            self._needs_rearm = True
        self._require_session("clear_stop")
        self._send_request(P.MsgType.CLEAR_PSTOP, P.Empty())
        with self._lock:
            if self.second_writer is not None:
                log.warning("%s: second-writer report acknowledged by clear_stop(): %s", self.name, self.second_writer)
            self.second_writer = None
            self._intrusion_stop_pending = False

    def validate_positions(self, positions) -> np.ndarray:
        """Shape, finiteness and limit clamp, as float32 (what goes on the wire), returned as float64."""
        q = np.asarray(positions, dtype=np.float64)
        if q.shape != (P.NUM_JOINTS,):
            raise CommandError(f"{self.name}: targets must have shape ({P.NUM_JOINTS},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            bad = [self.limits.names[i] for i in np.nonzero(~np.isfinite(q))[0]]
            raise CommandError(f"{self.name}: refusing non-finite targets for joints {bad}; nothing sent")
        return self.limits.clip(q).astype(np.float32).astype(np.float64)

    def send_targets(self, positions, t_target: float | None = None) -> np.ndarray:
        """Send one joint target, to be reached at monotonic time `t_target` (None: as fast as the
        limits allow). Returns exactly what was sent (clamped to the limits, float32-rounded).
        Raises CommandError (bad values: nothing sent), NotArmedError, DeviceNotConnectedError."""
        q = self.validate_positions(positions)
        with self._tx_lock:  # seq and timestamp order == wire order, whichever thread calls
            now = self.clock.now()
            reach_us = 0 if t_target is None else max(0, int(round((t_target - now) * 1e6)))
            seq, session = self._motion_slot()
            self._send(P.targets(seq, session, int(now * 1e6), q, reach_in_us=min(reach_us, 0xFFFFFFFF)), now, seq)
        self.last_sent_seq = seq
        return q

    def send_trajectory(self, times_s, positions) -> np.ndarray:
        """Send up to 8 timed points (monotonic times, strictly increasing, not in the past) for the
        firmware to interpolate at its servo rate. Returns the (K, 13) positions actually sent."""
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        qs = np.asarray(positions, dtype=np.float64)
        if qs.ndim != 2 or qs.shape[0] != t.size or not 1 <= t.size <= P.MAX_TRAJ_POINTS:
            raise CommandError(f"{self.name}: trajectory needs 1..{P.MAX_TRAJ_POINTS} times and (K, 13) "
                               f"positions, got times {t.shape} positions {qs.shape}")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise CommandError(f"{self.name}: trajectory times must be finite and strictly increasing: {t.tolist()}")
        sent = np.stack([self.validate_positions(q) for q in qs])
        with self._tx_lock:
            now = self.clock.now()
            offsets = np.maximum(0, np.round((t - now) * 1e6)).astype(np.int64)
            if np.any(np.diff(offsets) <= 0):
                raise CommandError(f"{self.name}: trajectory times {t.tolist()} are in the past or closer than 1 us")
            seq, session = self._motion_slot()
            self._send(P.trajectory(seq, session, int(now * 1e6), offsets, sent), now, seq)
        self.last_sent_seq = seq
        return sent

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until a firmware session is handshaken (e.g. after an automatic reconnect) or
        `timeout_s` passes; returns whether it is. Arming is still the caller's decision."""
        return self._ready.wait(timeout_s)

    def ping(self, count: int = 10) -> list[float]:
        """Round trips (seconds) of `count` HEARTBEAT -> ACK exchanges; blocks for them. Lost ones are
        retried like any request. Does not change the arm state (a heartbeat never moves anything)."""
        self._require_session("ping")
        rtts = []
        for _ in range(count):
            t0 = self.clock.now()
            self._send_request(P.MsgType.HEARTBEAT, P.Heartbeat(int(t0 * 1e6)))
            rtts.append(self.clock.now() - t0)
        return rtts

    # ---- state and status --------------------------------------------------------------------

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        """The newest state report as the runtime's JointState (named by this host's joint names,
        stamped with its receive time; efforts, firmware mode and fault flags kept); raises
        StaleDataError if none or older than `max_age_s`. The raw reports (every firmware field)
        stay in `self.state`. Converted once per report, on first read, not in the reader thread."""
        item = self.state.latest(max_age_s)
        cached = self._joint_state  # (mailbox seq, JointState): one atomic read; a racing reader at worst converts twice
        if cached is not None and cached[0] == item.seq:
            return cached[1]
        st = item.value
        js = JointState(self.limits.names, st.positions, st.velocities, st.t_host_receive, self._source,
                        {"mode": st.mode.name, "fault_flags": st.fault_flags}, st.efforts)
        self._joint_state = (item.seq, js)
        return js

    @property
    def link_up(self) -> bool:
        with self._lock:
            return self._link_up and not self._link_lost and self.clock.now() - self._last_rx <= self.timeout_s

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def needs_rearm(self) -> bool:
        """True after a firmware reset, reconnect, safe-off or protective stop until `arm()` succeeds."""
        return self._needs_rearm

    @property
    def session_id(self) -> int | None:
        return self._session if self._handshaked else None

    def counters(self) -> dict:
        with self._lock:
            c = dict(self._c)
        s = self.rtt.summary_ms()
        c["rtt_ms"] = {k: s[k] for k in ("p50", "p99", "max")}
        c["rtt_samples"] = s["count"]
        c["device_fault_codes"] = dict(self.device_fault_codes)
        return c

    def _check_envelope(self, ack: P.HelloAck) -> JointLimits:
        """The firmware's own limits from its HELLO_ACK; raises EnvelopeError (no motion enabled)
        when this host's envelope is wider anywhere, so a config can never command more than the
        firmware enforces."""
        if not ack.has_limits:
            raise EnvelopeError(f"{self.name}: firmware on {self.port} did not report its limits in the handshake; "
                                "no motion enabled")
        try:
            fw = JointLimits(self.limits.names, np.array(ack.lower), np.array(ack.upper),
                             np.array(ack.max_velocity), np.array(ack.max_acceleration))
        except ConfigError as exc:
            raise EnvelopeError(f"{self.name}: firmware on {self.port} reported invalid limits ({exc}); "
                                "no motion enabled") from None
        wider = self.limits.wider_than(fw)
        if wider:
            more = f" (+{len(wider) - 3} more)" if len(wider) > 3 else ""
            raise EnvelopeError(f"{self.name}: envelope wider than the firmware's on {self.port}: "
                                f"{'; '.join(wider[:3])}{more}; no motion enabled")
        return fw

    # ---- internals: sending -------------------------------------------------------------------

    def _next_seq(self) -> int:
        with self._lock:
            self._seq = (self._seq % 0xFFFFFFFE) + 1
            return self._seq

    def _require_session(self, what: str) -> None:
        if not self._handshaked or self._session is None:
            raise NotArmedError(f"{self.name}: cannot {what}: no handshaken firmware session on {self.port}")

    def _motion_slot(self) -> tuple[int, int]:
        with self._lock:
            if not self._handshaked or self._session is None:
                raise NotArmedError(f"{self.name}: no handshaken firmware session on {self.port}; nothing sent")
            if not self._armed:
                why = "re-arm required (new session, safe-off or stop)" if self._needs_rearm else "call arm() first"
                if self.second_writer is not None:
                    why = f"second writer on the port ({self.second_writer})"
                raise NotArmedError(f"{self.name}: not armed in session 0x{self._session:08x}: {why}; nothing sent")
            return self._next_seq(), self._session

    def _send(self, msg: P.Message, now: float, seq: int | None = None) -> None:
        link = self._link
        if link is None:
            raise DeviceNotConnectedError(f"{self.name}: serial port {self.port} is not open")
        # A leading delimiter ends any partial frame a timed-out write may have left on the line,
        # so only that frame is lost, not the next one too (empty frames are ignored by the firmware).
        data = b"\x00" + P.encode(msg)
        if seq is not None:
            with self._lock:
                self._send_times[seq] = now
                self._send_order.append(seq)
                while len(self._send_order) > 4096:
                    self._send_times.pop(self._send_order.popleft(), None)
                self._c["commands_sent"] += 1
        link.write(data)
        with self._lock:
            self._c["frames_tx"] += 1
            self._last_tx = now

    def _send_request(self, mtype: P.MsgType, body, retries: int | None = None) -> P.Message:
        """Send a request and wait for its ACK (or FAULT); retried on timeout with a new seq."""
        attempts = retries or self.request_retries
        with self._request_lock:
            for _ in range(attempts):
                pending = _Pending()
                seq = None
                try:
                    with self._tx_lock:
                        seq = self._next_seq()
                        with self._lock:
                            self._pending[seq] = pending
                        self._send(P.Message(mtype, seq, self._session or 0, body), self.clock.now())
                    if pending.event.wait(self.request_timeout_s):
                        reply = pending.reply
                        result = reply.body.error if reply.type is P.MsgType.FAULT else reply.body.result
                        if result != P.ErrorCode.OK:
                            raise DeviceRejectedError(
                                f"{self.name}: firmware on {self.port} refused {mtype.name}: "
                                f"{P.ErrorCode.name_of(result)}")
                        return reply
                finally:
                    if seq is not None:
                        with self._lock:
                            self._pending.pop(seq, None)
            with self._lock:
                self._c["timeouts"] += 1
        raise DeviceNotConnectedError(
            f"{self.name}: no answer to {mtype.name} from {self.port} after {attempts} attempts "
            f"of {self.request_timeout_s * 1e3:.0f} ms")

    def _handshake(self, deadline: float) -> P.HelloAck:
        """HELLO until answered or `deadline` (time.monotonic: waiting is real time, whatever the
        injected clock says) passes."""
        hello_body = P.Hello(self.expected_version, P.NUM_JOINTS, self.limits.schema_hash, 0)
        with self._lock:
            self._handshaked = False
            if self._armed:
                self._needs_rearm = True  # a handshake disarms the firmware
            self._armed = False
            self._ready.clear()
        with self._request_lock:
            while True:
                nonce = int.from_bytes(os.urandom(4), "little")
                pending = _Pending()
                with self._lock:
                    self._pending[("hello", nonce)] = pending
                try:
                    body = P.Hello(hello_body.protocol_version, hello_body.num_joints, hello_body.schema_hash, nonce)
                    with self._tx_lock:
                        msg_seq = self._next_seq()
                        self._send(P.Message(P.MsgType.HELLO, msg_seq, 0, body), self.clock.now())
                    got = pending.event.wait(min(self.request_timeout_s, max(0.001, deadline - time.monotonic())))
                finally:
                    with self._lock:
                        self._pending.pop(("hello", nonce), None)
                if got:
                    break
                if time.monotonic() >= deadline:
                    with self._lock:
                        self._c["timeouts"] += 1
                    raise DeviceNotConnectedError(f"{self.name}: no handshake answer from {self.port} "
                                                  "(is the firmware running and the port right?)")
        msg = pending.reply
        ack: P.HelloAck = msg.body
        if ack.result == P.ErrorCode.ERR_VERSION or ack.protocol_version != self.expected_version:
            raise ProtocolMismatchError(
                f"{self.name}: protocol version mismatch on {self.port}: host speaks version "
                f"{self.expected_version}, firmware speaks version {ack.protocol_version}; no motion enabled")
        if ack.num_joints != P.NUM_JOINTS:
            # The wire format has NUM_JOINTS slots; a firmware built for another count cannot be
            # driven by this host whatever its names hash says.
            raise ProtocolMismatchError(
                f"{self.name}: joint count mismatch on {self.port}: host speaks the {P.NUM_JOINTS}-joint wire "
                f"format ({', '.join(self.limits.names)}), firmware reports {ack.num_joints} joints; "
                "no motion enabled")
        if ack.result == P.ErrorCode.ERR_SCHEMA or ack.schema_hash != self.limits.schema_hash:
            raise ProtocolMismatchError(
                f"{self.name}: joint schema mismatch on {self.port}: host joints hash "
                f"0x{self.limits.schema_hash:08x} ({P.NUM_JOINTS} joints: {', '.join(self.limits.names)}), "
                f"firmware hash 0x{ack.schema_hash:08x} ({ack.num_joints} joints); no motion enabled")
        if ack.result != P.ErrorCode.OK:
            raise DeviceRejectedError(f"{self.name}: handshake refused: {P.ErrorCode.name_of(ack.result)}")
        fw_limits = self._check_envelope(ack)
        with self._lock:
            old = self._session
            self._session = msg.session_id
            self.device_info = ack
            self.firmware_limits = fw_limits
            self._hello_seq = msg_seq
            self._handshaked = True
            self._needs_handshake = False
            self._link_up = True
            if old is not None and old != msg.session_id:
                self._c["session_changes"] += 1
                self._needs_rearm = True
        self._ready.set()
        log.info("%s: handshake with %s ok: session 0x%08x firmware 0x%08x", self.name, self.port,
                 msg.session_id, ack.firmware_version)
        return ack
