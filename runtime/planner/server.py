"""The planner server: a ZeroMQ ROUTER in front of a PlannerBackend (VLM or local).

Threads:
- one I/O thread owns the ROUTER socket: it answers hello/ping itself (so a slow VLM call never
  delays a handshake or heartbeat), validates requests, and queues them;
- `workers` worker threads run backend calls from a bounded queue. A full queue is answered at once
  with "busy" instead of growing without bound; a request whose deadline passed while queued is
  answered "timeout" without calling the VLM.

Robustness: every message is size-checked (ZMQ_MAXMSGSIZE drops oversized peers at the transport,
wire.unpack re-checks), every failure becomes an error reply with a code and a reason, and an
unexpected exception in a backend is logged with its traceback and answered "internal": the server
never stops serving because of one request.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from runtime.clock import Clock
from runtime.errors import DeviceNotConnectedError, DexGraspError
from runtime.planner import wire
from runtime.planner.backend import PlannerBackend, PlannerTimeoutError, VLMError
from runtime.planner.replies import ReplyError
from runtime.planner.security import CurveServerConfig, apply_server
from runtime.planner.wakeup import Wakeup

log = logging.getLogger(__name__)


@dataclass
class _Job:
    identity: bytes
    request: wire.TaskRequest
    t_recv: float
    deadline: float


class PlannerServer:
    """Serve `backend` on `bind` (e.g. "tcp://0.0.0.0:5557"; "tcp://127.0.0.1:*" picks a free port).

    Lifecycle: `start()` binds and starts the threads (returns at once; raises on bind errors);
    `stop(timeout_s)` stops and joins them; also a context manager. `endpoint` is the bound address.
    """

    def __init__(
        self,
        backend: PlannerBackend,
        bind: str,
        clock: Clock | None = None,
        workers: int = 2,
        queue_size: int = 8,
        max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES,
        curve: CurveServerConfig | None = None,
        name: str = "dexgrasp-planner",
    ) -> None:
        if workers < 1 or queue_size < 1:
            raise ValueError(f"workers and queue_size must be >= 1, got {workers}, {queue_size}")
        self.backend = backend
        self.bind = bind
        self.clock = clock or Clock()
        self.n_workers = workers
        self.max_message_bytes = max_message_bytes
        self.curve = curve
        self.name = name
        self.endpoint: str | None = None
        self.counters = {"requests": 0, "ok": 0, "errors": 0, "busy": 0, "bad_frames": 0, "handshakes": 0}
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._outbox: queue.Queue[tuple[bytes, dict]] = queue.Queue()
        self._wakeup = Wakeup()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._lock = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout_s: float = 5.0) -> PlannerServer:
        io = threading.Thread(target=self._io_loop, name="planner-server-io", daemon=True)
        self._threads.append(io)
        io.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"planner server did not bind {self.bind} within {timeout_s} s")
        if self._start_error is not None:
            self.stop()
            exc = self._start_error
            if isinstance(exc, DexGraspError):
                raise exc
            raise DeviceNotConnectedError(f"planner server cannot bind {self.bind}: {exc}") from exc
        for i in range(self.n_workers):
            t = threading.Thread(target=self._worker_loop, name=f"planner-worker-{i}", daemon=True)
            self._threads.append(t)
            t.start()
        log.info("planner server (%s backend) listening on %s", self.backend.name, self.endpoint)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, let in-flight backend calls finish up to `timeout_s`, join threads."""
        self._stop.set()
        self._wakeup.wake()
        for _ in range(self.n_workers):
            try:
                self._jobs.put_nowait(None)
            except queue.Full:
                break  # workers see _stop after their current job
        for t in self._threads:
            t.join(timeout_s)
            if t.is_alive():
                log.warning("thread %s still alive %.1f s after stop (a backend call is stuck)", t.name, timeout_s)
        self._threads.clear()

    def __enter__(self) -> PlannerServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self, stop: threading.Event) -> None:
        """Block until `stop` is set (for the CLI), then stop the server."""
        try:
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    # ---- I/O thread ------------------------------------------------------------------------
    def _io_loop(self) -> None:
        import zmq

        ctx = zmq.Context()
        auth = None
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)  # replies to vanished clients are dropped, not errors
            if self.curve is not None:
                auth = apply_server(sock, ctx, self.curve)
            sock.bind(self.bind)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except Exception as exc:  # noqa: BLE001 - reported to start() and re-raised there
            self._start_error = exc
            self._ready.set()
            sock.close(0)
            if auth is not None:
                auth.stop()
            ctx.term()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wakeup.fileno(), zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(500))
                if self._wakeup.fileno() in events:
                    self._wakeup.drain()
                self._flush_outbox(sock)
                if sock in events:
                    for _ in range(64):  # bounded burst, then flush replies again
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_frames(sock, frames)
        finally:
            self._flush_outbox(sock)
            sock.close(0)
            if auth is not None:
                auth.stop()
            ctx.term()
            self._wakeup.close()

    def _send(self, sock, identity: bytes, msg: dict) -> None:
        import zmq

        try:
            data = wire.pack(msg, self.max_message_bytes)
        except wire.WireError as exc:
            log.error("reply %s too large, sending an error instead: %s", msg.get("request_id"), exc)
            data = wire.pack(wire.error_result(msg.get("request_id", ""), msg.get("episode_id", ""),
                                               msg.get("task", ""), "internal", str(exc), msg.get("timing", {})))
        try:
            sock.send_multipart([identity, data], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or its queue full: the client's deadline handles it
            log.warning("could not send %s to a client: %s", msg.get("type"), exc)

    def _flush_outbox(self, sock) -> None:
        while True:
            try:
                identity, msg = self._outbox.get_nowait()
            except queue.Empty:
                return
            if msg.get("timing") is not None:
                msg["timing"]["t_server_send"] = self.clock.now()
            self._send(sock, identity, msg)

    def _on_frames(self, sock, frames: list[bytes]) -> None:
        t_recv = self.clock.now()
        if len(frames) != 2:
            self._count("bad_frames")
            log.warning("dropping a message with %d frames (expected identity + payload)", len(frames))
            return
        identity, payload = frames
        try:
            msg = wire.unpack(payload, self.max_message_bytes)
        except wire.WireError as exc:
            self._count("bad_frames")
            log.warning("bad frame from a client: %s", exc)
            self._send(sock, identity, {"type": "error", "protocol": wire.PROTOCOL_VERSION, "message": str(exc)})
            return
        mtype = msg["type"]
        if mtype == "hello":
            self._count("handshakes")
            self._send(sock, identity, {
                "type": "hello_ok", "protocol": wire.PROTOCOL_VERSION, "server": self.name,
                "backend": self.backend.name, "tasks": list(wire.TASKS),
                # the VLM's model name when the backend has one (`dexgrasp check` shows it)
                "model": getattr(getattr(self.backend, "client", None), "model", None) or self.backend.name,
                "max_message_bytes": self.max_message_bytes, "t_server_recv": t_recv,
            })
        elif mtype == "ping":
            self._send(sock, identity, {
                "type": "pong", "protocol": wire.PROTOCOL_VERSION, "request_id": str(msg.get("request_id", ""))[:128],
                "t_server_recv": t_recv, "t_server_send": self.clock.now(),
            })
        elif mtype == "request":
            self._on_request(sock, identity, msg, t_recv)
        else:
            self._send(sock, identity, {"type": "error", "protocol": wire.PROTOCOL_VERSION,
                                        "message": f"unknown message type {mtype!r}"})

    def _on_request(self, sock, identity: bytes, msg: dict, t_recv: float) -> None:
        self._count("requests")
        rid = msg.get("request_id") if isinstance(msg.get("request_id"), str) else ""
        eid = msg.get("episode_id") if isinstance(msg.get("episode_id"), str) else ""
        task = msg.get("task") if isinstance(msg.get("task"), str) else ""
        timing = {"t_server_recv": t_recv}
        try:
            req = wire.parse_request(msg)
        except wire.WireError as exc:
            self._count("errors")
            self._send(sock, identity, wire.error_result(rid[:128], eid[:128], task[:32], "bad_request", str(exc), timing))
            return
        try:
            self._jobs.put_nowait(_Job(identity, req, t_recv, t_recv + req.timeout_s))
        except queue.Full:
            self._count("busy")
            self._send(sock, identity, wire.error_result(
                req.request_id, req.episode_id, req.task, "busy",
                f"planner queue full ({self._jobs.maxsize} waiting); try again", timing))

    # ---- workers ---------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            self._outbox.put((job.identity, self._run_job(job)))
            self._wakeup.wake()

    def _run_job(self, job: _Job) -> dict:
        req = job.request
        t_start = self.clock.now()
        timing = {"t_server_recv": job.t_recv, "queue_s": t_start - job.t_recv}
        code, message, result = None, "", None
        if t_start >= job.deadline:
            code, message = "timeout", f"deadline passed while queued ({timing['queue_s']:.2f} s)"
        else:
            try:
                result = self.backend.run(req, job.deadline)
            except ReplyError as exc:
                code, message = "invalid_reply", str(exc)
            except PlannerTimeoutError as exc:
                code, message = "timeout", str(exc)
            except VLMError as exc:
                code, message = "vlm_error", str(exc)
            except wire.WireError as exc:
                code, message = "bad_request", str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad request must never stop the server
                log.exception("planner backend crashed on %s %s", req.task, req.request_id)
                code, message = "internal", f"{type(exc).__name__}: {exc}"
        t_end = self.clock.now()
        timing["backend_s"] = t_end - t_start
        if result is not None and t_end > job.deadline:
            # An answer after the deadline is not used: the client has already given up on it.
            code, message, result = "timeout", f"answer came {t_end - job.deadline:.2f} s after the deadline", None
        if code is not None:
            self._count("errors")
            log.info("planner %s %s failed (%s): %s", req.task, req.request_id, code, message)
            return wire.error_result(req.request_id, req.episode_id, req.task, code, message, timing)
        for key in ("attempts", "vlm_latency_s"):
            if key in result:
                timing[key] = result.pop(key)
        self._count("ok")
        return wire.ok_result(req.request_id, req.episode_id, req.task, result, timing)
