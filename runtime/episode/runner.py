"""Drive an EpisodeMachine with real frames, a planner and an actuator, on its own thread.

The machine is pure; the runner does its I/O: it polls outstanding planner calls (never waits on
them), attaches camera frames to planner requests, keeps the exact head frame each box was found in
(so the mask is made on that frame), and hands every other action to an `EpisodeActuator` (the app's
tracker and control loop, or a fake in tests). It runs in its own `episode` thread at `period_s`
(default 20 Hz) paced by `runtime.rate.Rate`: nothing here runs in, or blocks, the control loop.

Integration (what runtime/app.py does through `make_episode(app)` in runtime/episode/app_glue.py):

    runner = EpisodeRunner(planner, actuator, app.head_frames, app.wrist_frames, clock, EpisodeConfig())
    runner.start_threads()            # starts the planner link and the episode thread
    runner.start("put the red cube away")      # or runner.start("", manual=True)
    runner.operator_box((x1, y1, x2, y2))      # manual mode; any thread; False if not waiting
    runner.abort("operator stop")              # any thread
    runner.stop()                     # joins the thread, stops the planner link

Every public method except `stop` returns at once (a lock and a queue put).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from typing import Protocol

import numpy as np

from runtime.clock import Clock
from runtime.episode.machine import (
    Abort,
    DisableController,
    EnableController,
    EpisodeConfig,
    EpisodeEnded,
    EpisodeMachine,
    InitTracker,
    OperatorBox,
    Phase,
    PlannerAnswer,
    RequestOperatorBox,
    RequestPlanner,
    ResetArm,
    SnapshotInitialImage,
    Start,
)
from runtime.errors import StaleDataError
from runtime.mailbox import Mailbox
from runtime.planner.calls import Planner, PlannerCall, PlannerReply

log = logging.getLogger(__name__)


class EpisodeActuator(Protocol):
    """What the episode asks of the robot side. Each method must return promptly (queue work, don't
    wait for it) and report completion by `runner.post(...)` (TrackerReady, HomeReached, OperatorBox)
    or through `poll()`."""

    def init_tracker(self, image_bgr: np.ndarray | None, box: tuple[int, int, int, int], image_id: str | None) -> None: ...

    def enable_controller(self) -> None: ...

    def disable_controller(self) -> None: ...

    def reset_arm(self, place: bool) -> None: ...

    def request_operator_box(self, image_bgr: np.ndarray | None) -> None: ...

    def episode_ended(self, outcome: str, reason: str) -> None: ...

    def poll(self, now: float) -> list:
        """Events observed since the last call (TrackerReady, TrackerLost, GraspSignal, HomeReached)."""
        ...


def frame_image(value) -> np.ndarray:
    """Mailbox values are camera `Frame`s (with .image) or bare BGR arrays."""
    return getattr(value, "image", value)


class EpisodeRunner:
    """Owns one EpisodeMachine and performs its actions. See the module docstring for usage."""

    def __init__(
        self,
        planner: Planner,
        actuator: EpisodeActuator,
        head_frames: Mailbox,
        wrist_frames: Mailbox,
        clock: Clock | None = None,
        config: EpisodeConfig | None = None,
        *,
        episode_prefix: str = "ep",
        max_frame_age_s: float = 0.5,
        keep_frames: int = 8,
        on_event=None,
        period_s: float = 0.05,
    ) -> None:
        self.planner = planner
        self.actuator = actuator
        self.head_frames = head_frames
        self.wrist_frames = wrist_frames
        self.clock = clock or Clock()
        self.machine = EpisodeMachine(config or EpisodeConfig())
        self.episode_prefix = episode_prefix
        self.max_frame_age_s = max_frame_age_s
        self.keep_frames = keep_frames
        self.on_event = on_event or (lambda event: None)
        self.period_s = period_s
        self.episode_id = ""
        self.episodes = 0
        self._events: queue.Queue = queue.Queue()
        self._calls: dict[int, PlannerCall] = {}
        self._sent_frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._initial_head: np.ndarray | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._planner_started = False

    # ---- any thread ------------------------------------------------------------------------
    def post(self, event) -> None:
        """Queue an event for the next tick. Thread-safe, never blocks."""
        self._events.put(event)

    def start(self, prompt: str, manual: bool = False) -> None:
        self.post(Start(prompt, manual))

    def abort(self, reason: str = "operator abort") -> None:
        self.post(Abort(reason))

    def operator_box(self, box) -> bool:
        """Hand the operator's box to a manual-mode episode (upstream --manual). Returns False (and
        posts nothing) unless the episode is waiting for one, so the caller can fall back."""
        with self._lock:
            waiting = self.machine.phase == Phase.AWAIT_OPERATOR_BOX
        if waiting:
            self.post(OperatorBox(tuple(float(v) for v in box)))
        return waiting

    def status(self) -> dict:
        with self._lock:
            st = self.machine.status()
        st["episode_id"] = self.episode_id
        st["planner_link"] = getattr(self.planner.state, "value", str(self.planner.state))
        return st

    # ---- the episode thread ----------------------------------------------------------------
    def start_threads(self) -> None:
        """Start the planner link (if it has a lifecycle) and the `episode` thread. Returns at once."""
        if hasattr(self.planner, "start") and not self._planner_started:
            self.planner.start()
            self._planner_started = True
        self._thread = threading.Thread(target=self._run, name="episode", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (the app disables the controller itself), then the planner link."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("episode thread still alive %.1f s after stop", timeout_s)
        if self._planner_started and hasattr(self.planner, "stop"):
            self.planner.stop()

    def _run(self) -> None:
        from runtime.rate import Rate

        rate = Rate(1.0 / self.period_s, self.clock, name="episode")
        while not self._stop.is_set():
            rate.sleep()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - log, keep the episode thread alive; the machine's limits still hold
                log.exception("episode tick failed")

    def tick(self, now: float | None = None) -> list:
        """One step: gather events (posted, planner answers, actuator observations), step the machine,
        perform its actions. Returns the actions (for tests and logs). Never blocks on the planner."""
        now = self.clock.now() if now is None else now
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        poll = getattr(self.actuator, "poll", None)
        if poll is not None:
            events.extend(poll(now))
        for token, call in list(self._calls.items()):
            reply = call.reply()
            if reply is not None:
                del self._calls[token]
                self._note_reply(reply)
                events.append(PlannerAnswer(token, reply))
        with self._lock:
            phase_before = self.machine.phase
            actions = self.machine.step(now, events)
            phase_after = self.machine.phase
        if phase_after != phase_before:
            self.on_event({"source": "episode", "event": f"phase {phase_after.value}",
                           "episode_id": self.episode_id, **self.machine.status()})
        for action in actions:
            self._perform(now, action)
        return actions

    # ---- actions ---------------------------------------------------------------------------
    def _latest(self, box: Mailbox) -> np.ndarray | None:
        try:
            return frame_image(box.latest(self.max_frame_age_s).value)
        except StaleDataError:
            return None

    def _perform(self, now: float, action) -> None:
        if isinstance(action, SnapshotInitialImage):
            self.episodes += 1
            if self.episode_id:
                self.planner.cancel_episode(self.episode_id)  # answers for the old episode are discarded
            self.episode_id = f"{self.episode_prefix}-{self.episodes}"
            self._calls.clear()
            self._sent_frames.clear()
            self._initial_head = self._latest(self.head_frames)
        elif isinstance(action, RequestPlanner):
            self._submit(now, action)
        elif isinstance(action, InitTracker):
            image = self._sent_frames.get(action.image_id) if action.image_id else None
            self.actuator.init_tracker(image, action.box, action.image_id)
        elif isinstance(action, EnableController):
            self.actuator.enable_controller()
        elif isinstance(action, DisableController):
            self.actuator.disable_controller()
        elif isinstance(action, ResetArm):
            self.actuator.reset_arm(action.place)
        elif isinstance(action, RequestOperatorBox):
            self.actuator.request_operator_box(self._latest(self.head_frames))
        elif isinstance(action, EpisodeEnded):
            self.planner.cancel_episode(self.episode_id)
            self._calls.clear()
            log.info("episode %s ended: %s (%s)", self.episode_id, action.outcome, action.reason)
            self.on_event({"source": "episode", "event": f"ended {action.outcome}", "episode_id": self.episode_id,
                           "outcome": action.outcome, "reason": action.reason})
            self.actuator.episode_ended(action.outcome, action.reason)
        else:
            log.error("episode runner: unknown action %r", action)

    def _note_reply(self, reply: PlannerReply) -> None:
        """Planner replies go to the observers (the recorder's events.jsonl, the status topic) with what the
        planner said, so that an episode's log tells which instruction and box the controller acted on."""
        self.on_event({"source": "planner", "event": "planner reply", "episode_id": reply.episode_id or self.episode_id,
                       "request_id": reply.request_id, "task": reply.task, "ok": reply.ok,
                       "result": dict(reply.result), "error_code": reply.error_code,
                       "error_message": reply.error_message, "rtt_s": reply.rtt_s})

    def _submit(self, now: float, action: RequestPlanner) -> None:
        from runtime.planner.wire import TASK_IMAGES

        images = {}
        head = self._latest(self.head_frames)
        for role in TASK_IMAGES[action.task]:
            img = {"head": head, "initial_head": self._initial_head,
                   "wrist": self._latest(self.wrist_frames) if role == "wrist" else None}[role]
            if img is None:
                # Explicit failure, handled by the machine like any planner error (bounded retries).
                reply = PlannerReply("", self.episode_id, action.task, False, error_code="stale",
                                     error_message=f"no {role} frame newer than {self.max_frame_age_s:g} s")
                self._note_reply(reply)
                self.post(PlannerAnswer(action.token, reply))
                return
            images[role] = img
        call = self.planner.submit(action.task, images, episode_id=self.episode_id,
                                   timeout_s=self.machine.config.planner_timeout_s,
                                   prompt=action.prompt, instruction=action.instruction)
        self._calls[action.token] = call
        self.on_event({"source": "planner", "event": "planner request", "episode_id": self.episode_id,
                       "request_id": call.request_id, "task": action.task, "prompt": action.prompt,
                       "instruction": action.instruction, "images": dict(call.image_ids)})
        if action.task == "bbox":
            self._sent_frames[call.image_ids["head"]] = head
            while len(self._sent_frames) > self.keep_frames:
                self._sent_frames.popitem(last=False)
