"""Run a PlannerBackend in this process behind the same non-blocking `submit` API as PlannerClient.

For the embedded default: the local OpenCV backend needs no server, but the episode logic should
not care. Backend calls run on `workers` named threads from a bounded queue; a deadline thread
resolves overdue calls as "timeout" exactly like the ZMQ client does, and a result that comes later
is discarded (PlannerCall resolves once).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading

import numpy as np

from runtime.clock import Clock
from runtime.planner import wire
from runtime.planner.backend import PlannerBackend, PlannerTimeoutError, VLMError
from runtime.planner.calls import LinkState, PlannerCall, PlannerReply, check_submit
from runtime.planner.images import encode_image
from runtime.planner.replies import ReplyError

log = logging.getLogger(__name__)


class InProcessPlanner:
    """Planner protocol over a local backend. `submit` never blocks; `stop(timeout_s)` joins threads."""

    def __init__(self, backend: PlannerBackend, clock: Clock | None = None, workers: int = 1,
                 queue_size: int = 8, deadline_check_s: float = 0.02) -> None:
        self.backend = backend
        self.clock = clock or Clock()
        self.deadline_check_s = deadline_check_s
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._pending: dict[str, PlannerCall] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._threads = [threading.Thread(target=self._worker, name=f"planner-inproc-{i}", daemon=True)
                         for i in range(workers)]
        self._threads.append(threading.Thread(target=self._deadlines, name="planner-inproc-deadlines", daemon=True))
        self._failures = 0

    def start(self) -> InProcessPlanner:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        for _ in self._threads:
            try:
                self._jobs.put_nowait(None)
            except queue.Full:
                break
        for t in self._threads:
            t.join(timeout_s)
            if t.is_alive():
                log.warning("thread %s still alive %.1f s after stop", t.name, timeout_s)
        with self._lock:
            calls, self._pending = list(self._pending.values()), {}
        for c in calls:
            c.fail("cancelled", "in-process planner stopped")

    def __enter__(self) -> InProcessPlanner:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def state(self) -> LinkState:
        if self._stop.is_set():
            return LinkState.STOPPED
        return LinkState.DEGRADED if self._failures else LinkState.CONNECTED

    def submit(self, task: str, images: dict[str, np.ndarray], *, episode_id: str, timeout_s: float,
               prompt: str | None = None, instruction: str | None = None) -> PlannerCall:
        roles = check_submit(task, images, timeout_s)
        rid = f"local-{next(self._ids)}"
        ids = {r: f"{rid}-{r}" for r in roles}
        sizes = {r: (int(images[r].shape[1]), int(images[r].shape[0])) for r in roles}
        call = PlannerCall(rid, episode_id, task, self.clock.now() + timeout_s, ids, sizes)
        with self._lock:
            self._pending[rid] = call
        try:
            self._jobs.put_nowait((call, {r: images[r] for r in roles}, prompt, instruction))
        except queue.Full:
            self._resolve(call, False, code="busy", message="in-process planner queue full")
        return call

    def cancel_episode(self, episode_id: str) -> int:
        with self._lock:
            victims = [c for c in self._pending.values() if c.episode_id == episode_id]
            for c in victims:
                self._pending.pop(c.request_id, None)
        for c in victims:
            c.fail("cancelled", f"episode {episode_id} was cancelled")
        return len(victims)

    def _resolve(self, call: PlannerCall, ok: bool, result: dict | None = None, code: str | None = None,
                 message: str = "") -> None:
        with self._lock:
            if self._pending.pop(call.request_id, None) is None:
                return  # timed out or cancelled already: the late result is discarded
            self._failures = 0 if ok else self._failures + (code in ("timeout", "vlm_error", "busy", "internal"))
        call.resolve(PlannerReply(call.request_id, call.episode_id, call.task, ok, result=result or {},
                                  error_code=code, error_message=message))

    def _worker(self) -> None:
        while not self._stop.is_set():
            job = self._jobs.get()
            if job is None:
                return
            call, images, prompt, instruction = job
            if call.done():
                continue
            try:
                wimgs = {r: encode_image(img, fmt="png", image_id=call.image_ids[r]) for r, img in images.items()}
                req = wire.TaskRequest(call.request_id, call.episode_id, call.task,
                                       max(1e-3, call.deadline - self.clock.now()), wimgs, prompt, instruction)
                result = self.backend.run(req, call.deadline)
                result.pop("attempts", None)
                result.pop("vlm_latency_s", None)
                self._resolve(call, True, result)
            except ReplyError as exc:
                self._resolve(call, False, code="invalid_reply", message=str(exc))
            except PlannerTimeoutError as exc:
                self._resolve(call, False, code="timeout", message=str(exc))
            except VLMError as exc:
                self._resolve(call, False, code="vlm_error", message=str(exc))
            except wire.WireError as exc:
                self._resolve(call, False, code="bad_request", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - a backend bug must not kill the worker
                log.exception("in-process planner backend crashed on %s", call.task)
                self._resolve(call, False, code="internal", message=f"{type(exc).__name__}: {exc}")

    def _deadlines(self) -> None:
        while not self._stop.wait(self.deadline_check_s):
            now = self.clock.now()
            with self._lock:
                overdue = [c for c in self._pending.values() if now >= c.deadline]
            for c in overdue:
                self._resolve(c, False, code="timeout", message="no answer before the deadline")
