"""The runtime's planner client: asynchronous, deadline-driven, self-healing.

Why not REQ/REP: a REQ socket that lost its reply is stuck forever (it refuses to send again), and a
blocking `recv` in the control path is exactly what must never happen. Here a background I/O thread
owns a DEALER socket; callers `submit()` (returns a PlannerCall at once) and poll `call.reply()`.

- Every request has a deadline on the client's clock; at the deadline the call resolves to a
  "timeout" reply, whatever the server does. Answers that arrive later are discarded and counted.
- Every request carries an episode id; `cancel_episode()` resolves the old episode's calls as
  "cancelled" and their answers are discarded too.
- The link state (CONNECTING/CONNECTED/DEGRADED/UNREACHABLE) comes from a handshake plus heartbeats.
  When the server stops answering for `liveness_s`, the socket is closed and recreated (queued
  messages dropped) and the handshake restarts; unanswered requests are re-sent at most
  `max_resends` times while their deadline allows.
- Replies are re-checked here (defence in depth): a box must be for the image we sent (same
  image id, same size) and inside it, booleans must be booleans.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import uuid
from dataclasses import dataclass

import numpy as np

from runtime.clock import Clock
from runtime.planner import wire
from runtime.planner.calls import LinkState, PlannerCall, PlannerReply, check_submit
from runtime.planner.images import encode_image
from runtime.planner.replies import ReplyError, validate_box
from runtime.planner.security import CurveClientConfig, apply_client
from runtime.planner.wakeup import Wakeup
from runtime.stats import LatencyStats

log = logging.getLogger(__name__)

# Failure codes that say the planner side is struggling (vs. a model answer that failed validation).
_DEGRADING_CODES = ("timeout", "vlm_error", "busy", "internal")


class StaleAnswerError(ReplyError):
    """An answer about another image (an old frame, another size) than the one this call sent."""


@dataclass
class _Pending:
    call: PlannerCall
    request: wire.TaskRequest | None
    t_submit: float
    sent: bool = False
    resends: int = 0


class PlannerClient:
    """Talk to a PlannerServer at `endpoint` ("tcp://host:port") without ever blocking the caller.

    Blocking behaviour: `submit`, `cancel_episode`, `state`, `status` only take a lock and write a
    byte to a pipe. `start()` returns at once (the handshake proceeds in the background; use
    `wait_connected(timeout_s)` to block for it). `stop(timeout_s)` joins the I/O thread.
    """

    def __init__(
        self,
        endpoint: str,
        clock: Clock | None = None,
        *,
        name: str = "dexgrasp-runtime",
        heartbeat_period_s: float = 1.0,
        liveness_s: float = 3.0,
        max_resends: int = 1,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
        curve: CurveClientConfig | None = None,
        image_format: str = "jpeg",
        jpeg_quality: int = 90,
        max_side_px: int | None = None,
        network_margin_s: float = 0.05,
        box_limits: dict | None = None,
        reconnect_max_s: float = 2.0,
    ) -> None:
        if heartbeat_period_s <= 0 or liveness_s <= heartbeat_period_s:
            raise ValueError(f"need 0 < heartbeat_period_s ({heartbeat_period_s}) < liveness_s ({liveness_s})")
        self.endpoint = endpoint
        self.clock = clock or Clock()
        self.name = name
        self.heartbeat_period_s = heartbeat_period_s
        self.liveness_s = liveness_s
        self.max_resends = max_resends
        self.max_message_bytes = max_message_bytes
        self.curve = curve
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.max_side_px = max_side_px
        self.network_margin_s = network_margin_s
        self.box_limits = dict(box_limits or {})
        # ZeroMQ doubles the reconnect interval from 0.1 s up to this cap while nothing listens: a
        # server that binds late is only noticed at the next try (up to this long after it binds).
        self.reconnect_max_s = reconnect_max_s
        self.server_info: dict = {}
        self.last_server_error = ""
        self.link_error = ""  # why the link is down, when ZeroMQ says (CURVE refusals)
        self.rtt = LatencyStats(10_000)
        self.counters = {"submitted": 0, "ok": 0, "failed": 0, "timeouts": 0, "discarded_late": 0,
                         "discarded_stale": 0, "reconnects": 0, "bad_frames": 0}
        self._lock = threading.Lock()
        self._inbox: queue.Queue[tuple] = queue.Queue()
        self._pending: dict[str, _Pending] = {}
        self._cancelled_episodes: set[str] = set()
        self._wakeup = Wakeup()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handshaken = False
        self._ever_connected = False
        self._last_heard: float | None = None
        self._consecutive_failures = 0
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self._stopped = False
        self._t_started: float | None = None
        self._hello_sent = False

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> PlannerClient:
        self._thread = threading.Thread(target=self._io_loop, name="planner-client-io", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wakeup.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("planner client I/O thread still alive %.1f s after stop", timeout_s)
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            self._stopped = True
        for p in pending:
            p.call.fail("cancelled", "planner client stopped")

    def __enter__(self) -> PlannerClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- public API ------------------------------------------------------------------------
    @property
    def state(self) -> LinkState:
        with self._lock:
            if self._stopped or self._stop.is_set():
                return LinkState.STOPPED
            if not self._handshaken:
                return LinkState.UNREACHABLE if self._ever_connected or self._unreachable_since_start() \
                    else LinkState.CONNECTING
            if self._last_heard is None or self.clock.now() - self._last_heard > self.liveness_s:
                return LinkState.UNREACHABLE
            return LinkState.DEGRADED if self._consecutive_failures else LinkState.CONNECTED

    def _unreachable_since_start(self) -> bool:
        return self._t_started is not None and self.clock.now() - self._t_started > self.liveness_s

    def wait_connected(self, timeout_s: float) -> bool:
        """Block up to `timeout_s` for the handshake (CLI and tests; not for the control path)."""
        deadline = self.clock.now() + timeout_s
        while self.clock.now() < deadline:
            if self.state in (LinkState.CONNECTED, LinkState.DEGRADED):
                return True
            self._stop.wait(0.01)
        return self.state in (LinkState.CONNECTED, LinkState.DEGRADED)

    def status(self) -> dict:
        with self._lock:
            last = None if self._last_heard is None else self.clock.now() - self._last_heard
            counters = dict(self.counters)
            pending = len(self._pending)
        return {"state": self.state.value, "endpoint": self.endpoint, "server": self.server_info,
                "last_server_error": self.last_server_error, "link_error": self.link_error,
                "last_heard_age_s": last, "pending": pending, "rtt_ms": self.rtt.summary_ms(), **counters}

    def submit(self, task: str, images: dict[str, np.ndarray], *, episode_id: str, timeout_s: float,
               prompt: str | None = None, instruction: str | None = None) -> PlannerCall:
        """Queue a request; returns its PlannerCall at once. Never raises for link problems: those
        resolve the call with an error code. Bad arguments (unknown task, missing image) raise ValueError."""
        roles = check_submit(task, images, timeout_s)
        now = self.clock.now()
        rid = f"{self._prefix}-{next(self._ids)}"
        image_ids = {r: f"{rid}-{r}" for r in roles}
        sizes = {r: (int(images[r].shape[1]), int(images[r].shape[0])) for r in roles
                 if hasattr(images[r], "shape") and len(images[r].shape) >= 2}
        call = PlannerCall(rid, episode_id, task, now + timeout_s, image_ids, sizes)
        with self._lock:
            self.counters["submitted"] += 1
            if self._stopped:
                call.fail("cancelled", "planner client stopped")
                return call
            self._pending[rid] = _Pending(call, None, now)
        self._inbox.put(("submit", rid, task, {r: images[r] for r in roles}, prompt, instruction))
        self._wakeup.wake()
        return call

    def cancel_episode(self, episode_id: str) -> int:
        """Resolve every pending call of `episode_id` as cancelled; their answers will be discarded."""
        with self._lock:
            self._cancelled_episodes.add(episode_id)
            victims = [rid for rid, p in self._pending.items() if p.call.episode_id == episode_id]
            calls = [self._pending.pop(rid).call for rid in victims]
        for c in calls:
            c.fail("cancelled", f"episode {episode_id} was cancelled")
        return len(calls)

    # ---- I/O thread ------------------------------------------------------------------------
    def _new_socket(self, ctx):
        import zmq

        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)   # never queue for a peer that is not connected
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(100, int(self.reconnect_max_s * 1000)))
        sock.setsockopt(zmq.SNDHWM, 64)
        sock.setsockopt(zmq.RCVHWM, 64)
        if self.curve is not None:
            apply_client(sock, self.curve)
        sock.connect(self.endpoint)
        return sock

    def _io_loop(self) -> None:
        import zmq

        ctx = zmq.Context()
        self._t_started = self.clock.now()
        sock = self._new_socket(ctx)
        monitor = self._monitor(sock)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._wakeup.fileno(), zmq.POLLIN)
        last_hello = last_ping = -1e18
        self._hello_sent = False
        t_link = self.clock.now()  # when this socket started waiting to be heard from
        try:
            while not self._stop.is_set():
                now = self.clock.now()
                if self._handshaken:
                    timeout_ms = self._poll_timeout_ms(now, last_ping, self.heartbeat_period_s)
                else:
                    timeout_ms = self._poll_timeout_ms(
                        now, last_hello, self.heartbeat_period_s if self._hello_sent else min(0.02, self.heartbeat_period_s))
                try:
                    events = dict(poller.poll(timeout_ms))
                except zmq.ZMQError as exc:
                    log.warning("planner client poll failed: %s", exc)
                    events = {}
                if self._wakeup.fileno() in events:
                    self._wakeup.drain()
                if sock in events:
                    self._receive_all(sock)
                if monitor in events:
                    self._on_monitor(monitor)
                self._process_inbox(sock)
                now = self.clock.now()
                # Until the handshake: re-send hello every heartbeat, or within 20 ms while the
                # connection is not up yet (IMMEDIATE makes the send fail instead of queueing it).
                hello_every = self.heartbeat_period_s if self._hello_sent else min(0.02, self.heartbeat_period_s)
                if not self._handshaken and now - last_hello >= hello_every:
                    last_hello = now
                    self._hello_sent = self._send(sock, wire.hello(self.name))
                elif self._handshaken and now - last_ping >= self.heartbeat_period_s:
                    last_ping = now
                    self._send(sock, wire.ping(f"ping-{next(self._ids)}"))
                self._flush_unsent(sock)
                self._expire(now)
                heard = self._last_heard if self._last_heard is not None and self._last_heard > t_link else t_link
                if now - heard > self.liveness_s:
                    log.warning("planner server %s silent for %.1f s: recreating the socket", self.endpoint,
                                now - heard)
                    poller.unregister(sock)
                    poller.unregister(monitor)
                    self._close(sock, monitor)
                    sock = self._new_socket(ctx)
                    monitor = self._monitor(sock)
                    poller.register(sock, zmq.POLLIN)
                    poller.register(monitor, zmq.POLLIN)
                    with self._lock:
                        self._handshaken = False
                        self._ever_connected = True
                        self.counters["reconnects"] += 1
                        for p in self._pending.values():
                            if p.sent and p.resends < self.max_resends:
                                p.sent, p.resends = False, p.resends + 1
                    last_hello = -1e18
                    self._hello_sent = False
                    t_link = now
        finally:
            self._close(sock, monitor)
            ctx.term()
            self._wakeup.close()

    def _monitor(self, sock):
        """A PAIR socket receiving this socket's connection events (handshake failures explain why a
        link stays down: a refused CURVE key vs. a wrong server key vs. nothing listening)."""
        import zmq

        events = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                  | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        return sock.get_monitor_socket(events)

    @staticmethod
    def _close(sock, monitor) -> None:
        import zmq

        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass  # already gone: closing below is all that matters
        monitor.close(0)
        sock.close(0)

    def _on_monitor(self, monitor) -> None:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        for _ in range(64):
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                log.warning("planner client monitor failed: %s", exc)
                return
            kind, value = event["event"], event["value"]
            if kind == zmq.EVENT_DISCONNECTED:
                self._on_disconnected()
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.link_error = ""
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.link_error = (f"the server refused this client's CURVE key (ZAP status {value}): "
                                   "put this client's public key in the server's allowed-clients directory")
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
                self.link_error = ("ZeroMQ security handshake failed: "
                                   + ("is the pinned server public key the server's, and does the server use "
                                      "CURVE?" if self.curve is not None else
                                      "the server probably requires CURVE (pass the client and server keys)"))

    def _on_disconnected(self) -> None:
        """The TCP connection dropped (server restarted, network blip): ZeroMQ reconnects by itself,
        but requests the old connection carried are lost. Mark them for re-sending (bounded) and redo
        the handshake with whoever answers next."""
        with self._lock:
            self._handshaken = False
            self._hello_sent = False
            for p in self._pending.values():
                if p.sent and p.resends < self.max_resends:
                    p.sent, p.resends = False, p.resends + 1

    def _poll_timeout_ms(self, now: float, last_beat: float, period_s: float) -> int:
        wake_at = last_beat + period_s
        with self._lock:
            for p in self._pending.values():
                wake_at = min(wake_at, p.call.deadline)
        return int(min(max(0.0, wake_at - now) * 1000.0 + 1, 250))

    def _send(self, sock, msg: dict) -> bool:
        import zmq

        try:
            sock.send(wire.pack(msg, self.max_message_bytes), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False  # not connected (IMMEDIATE) or queue full: retried later / deadline handles it
        except zmq.ZMQError as exc:
            log.warning("planner client send failed: %s", exc)
            return False

    def _process_inbox(self, sock) -> None:
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            _, rid, task, images, prompt, instruction = item
            with self._lock:
                pending = self._pending.get(rid)
            if pending is None:
                continue  # cancelled before we got to it
            try:
                wire_images = {
                    role: encode_image(img, fmt=self.image_format, quality=self.jpeg_quality,
                                       max_side_px=self.max_side_px, image_id=pending.call.image_ids[role])
                    for role, img in images.items()
                }
                req = wire.TaskRequest(rid, pending.call.episode_id, task, 1.0, wire_images, prompt, instruction)
                wire.pack(req.to_wire(), self.max_message_bytes)  # size check before it is ever sent
            except wire.WireError as exc:
                self._finish(rid, PlannerReply(rid, pending.call.episode_id, task, False, error_code="bad_request",
                                               error_message=str(exc)))
                continue
            pending.request = req
            self._try_send(sock, pending)

    def _try_send(self, sock, p: _Pending) -> None:
        remaining = p.call.deadline - self.clock.now()
        budget = remaining - min(self.network_margin_s, 0.2 * remaining)
        if budget <= 0:
            return  # _expire resolves it
        req = p.request
        msg = wire.TaskRequest(req.request_id, req.episode_id, req.task, min(budget, 600.0), req.images,
                               req.prompt, req.instruction).to_wire()
        p.sent = self._send(sock, msg)

    def _flush_unsent(self, sock) -> None:
        if not self._handshaken:
            return
        with self._lock:
            unsent = [p for p in self._pending.values() if not p.sent and p.request is not None]
        for p in unsent:
            self._try_send(sock, p)

    def _expire(self, now: float) -> None:
        with self._lock:
            expired = [rid for rid, p in self._pending.items() if now >= p.call.deadline]
        for rid in expired:
            with self._lock:
                p = self._pending.get(rid)
            if p is None:
                continue
            where = "server did not answer" if p.sent else "request could not be sent (server unreachable)"
            self._finish(rid, PlannerReply(rid, p.call.episode_id, p.call.task, False, error_code="timeout",
                                           error_message=f"no answer within {p.call.deadline - p.t_submit:.2f} s ({where})"))

    def _finish(self, rid: str, reply: PlannerReply) -> None:
        with self._lock:
            p = self._pending.pop(rid, None)
            if p is None:
                return
            if reply.ok:
                self.counters["ok"] += 1
                self._consecutive_failures = 0
            else:
                self.counters["failed"] += 1
                if reply.error_code == "timeout":
                    self.counters["timeouts"] += 1
                if reply.error_code in _DEGRADING_CODES:
                    self._consecutive_failures += 1
        p.call.resolve(reply)

    def _receive_all(self, sock) -> None:
        import zmq

        for _ in range(256):
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                log.warning("planner client receive failed: %s", exc)
                return
            try:
                msg = wire.unpack(data, self.max_message_bytes)
            except wire.WireError as exc:
                self.counters["bad_frames"] += 1
                log.warning("bad frame from planner server: %s", exc)
                continue
            with self._lock:
                self._last_heard = self.clock.now()
            mtype = msg["type"]
            if mtype == "hello_ok":
                with self._lock:
                    self._handshaken = True
                    self._ever_connected = True
                self.server_info = {k: msg.get(k) for k in ("server", "backend", "model", "tasks", "max_message_bytes")}
                log.info("planner link up: %s", self.server_info)
            elif mtype == "result":
                self._on_result(msg)
            elif mtype == "error":
                self.last_server_error = str(msg.get("message", ""))[:500]
                log.warning("planner server reported: %s", self.last_server_error)

    def _on_result(self, msg: dict) -> None:
        rid = msg.get("request_id")
        with self._lock:
            p = self._pending.get(rid) if isinstance(rid, str) else None
            if p is None:
                self.counters["discarded_late"] += 1
                return
            if msg.get("episode_id") != p.call.episode_id or p.call.episode_id in self._cancelled_episodes:
                self.counters["discarded_stale"] += 1
                return
        call = p.call
        rtt = self.clock.now() - p.t_submit
        self.rtt.add(rtt)
        timing = msg.get("timing") if isinstance(msg.get("timing"), dict) else {}
        if msg.get("ok") is True and isinstance(msg.get("result"), dict):
            try:
                result = self._check_result(call, msg["result"])
                reply = PlannerReply(rid, call.episode_id, call.task, True, result=result, timing=timing, rtt_s=rtt)
            except ReplyError as exc:
                code = "stale" if isinstance(exc, StaleAnswerError) else "invalid_reply"
                reply = PlannerReply(rid, call.episode_id, call.task, False, error_code=code,
                                     error_message=f"server answer rejected by the client: {exc}", timing=timing,
                                     rtt_s=rtt)
        else:
            err = msg.get("error") if isinstance(msg.get("error"), dict) else {}
            code = err.get("code") if err.get("code") in wire.ERROR_CODES else "internal"
            reply = PlannerReply(rid, call.episode_id, call.task, False, error_code=code,
                                 error_message=str(err.get("message", "no reason given"))[:2000], timing=timing,
                                 rtt_s=rtt)
        self._finish(rid, reply)

    def _check_result(self, call: PlannerCall, result: dict) -> dict:
        task = call.task
        if task == "bbox":
            if result.get("image_id") != call.image_ids.get("head"):
                raise StaleAnswerError(f"box is for image {result.get('image_id')!r}, not the head image "
                                 f"{call.image_ids.get('head')!r} that was sent (an old image?)")
            size = call.image_sizes.get("head")
            if size is not None and list(result.get("image_size") or []) != list(size):
                raise StaleAnswerError(f"box is for image size {result.get('image_size')}, the head image is {list(size)}")
            w, h = size if size is not None else result["image_size"]
            x1, y1, x2, y2 = validate_box(result.get("bbox"), w, h, **self.box_limits)
            label = result.get("label") if isinstance(result.get("label"), str) else ""
            return {"bbox": [int(round(v)) for v in (x1, y1, x2, y2)], "label": label[:80],
                    "image_id": result["image_id"], "image_size": [w, h]}
        key = {"verify": "success", "complete": "completed"}.get(task)
        if key is not None:
            if not isinstance(result.get(key), bool):
                raise ReplyError(f"'{key}' is {result.get(key)!r}, not a boolean")
            return {key: result[key], "reasoning": str(result.get("reasoning", ""))[:400]}
        text = result.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise ReplyError("instruction is missing or empty")
        return {"instruction": text[:wire.MAX_TEXT_CHARS]}
