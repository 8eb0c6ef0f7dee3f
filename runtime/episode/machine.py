"""The grasping episode as a pure, clock-driven state machine.

DexGraspVLA's episode (upstream `inference.py`: run_planner / run_manual, check_grasp_success,
monitor_execution_time) written as explicit phases. `step(now, events)` consumes events and returns
actions; it never sleeps, never does I/O and never reads a clock itself, so tests drive it with
exact times and assert exact action lists, and every wait has a deadline that turns into a state.

Planner mode (upstream default):
  IDLE -Start-> CHECKING_COMPLETE (upstream checks once before grasping) -> PROPOSING (next
  instruction) -> LOCATING (box) -> INIT_MASK (SAM/tracker on the box's own frame) -> GRASPING
  (controller on) -> VERIFYING (when the hand has closed and the arm has lifted, held for
  `verify_settle_s`; the controller keeps running meanwhile, as upstream) -> success: RESETTING
  (controller off, place, open hand, home) -> CHECKING_COMPLETE -> ... -> ENDED("completed").
Manual mode (upstream `--manual`): IDLE -Start(manual)-> AWAIT_OPERATOR_BOX -> INIT_MASK ->
  GRASPING until the operator ends it or the time limit -> RESETTING -> ENDED("attempt_done").

Limits (upstream values as defaults where upstream has them):
- `max_grasp_duration_s` = 100: one grasp attempt (upstream `max_episode_duration`, reset per grasp);
- `max_verify_failures` = 3: consecutive "not grasped" verdicts end the attempt (upstream);
- `max_failed_attempts`: consecutive failed attempts end the episode (upstream loops forever);
- `max_episode_duration_s`: the whole episode, prompt to completion;
- planner calls: each has `planner_timeout_s`; a failure (timeout, invalid reply, VLM down) is
  retried `planner_retries` times, then the episode ends with outcome "planner_failed" after a
  safe reset. Nothing the planner says moves joints: it only picks the target box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from runtime.episode.events import (
    Abort,
    DisableController,
    EnableController,
    EpisodeEnded,
    GraspSignal,
    HomeReached,
    InitTracker,
    OperatorBox,
    OperatorEndGrasp,
    PlannerAnswer,
    RequestOperatorBox,
    RequestPlanner,
    ResetArm,
    SnapshotInitialImage,
    Start,
    TrackerLost,
    TrackerReady,
)
from runtime.errors import ConfigError
from runtime.planner.calls import PlannerReply
from runtime.planner.replies import ReplyError, validate_box

# The planner resolves every call by its deadline; the machine gives it this much more before it
# declares the call lost itself (so a bug elsewhere can never leave an episode waiting forever).
PLANNER_GRACE_S = 1.0


class Phase(str, Enum):
    IDLE = "idle"
    CHECKING_COMPLETE = "checking_complete"
    PROPOSING = "proposing"
    LOCATING = "locating"
    AWAIT_OPERATOR_BOX = "await_operator_box"
    INIT_MASK = "init_mask"
    GRASPING = "grasping"
    VERIFYING = "verifying"
    RESETTING = "resetting"
    ENDED = "ended"


# ---- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EpisodeConfig:
    """Limits of one episode. Times in seconds on the injected clock."""

    planner_timeout_s: float = 30.0
    planner_retries: int = 2
    max_grasp_duration_s: float = 100.0
    max_verify_failures: int = 3
    max_failed_attempts: int = 3
    max_episode_duration_s: float = 600.0
    verify_settle_s: float = 0.5
    verify_interval_s: float = 1.0
    tracker_init_timeout_s: float = 10.0
    reset_timeout_s: float = 30.0
    check_complete_first: bool = True
    # Also verify once an attempt has run this long without the closed+lifted signal (robots whose
    # state gives no such signal); None = only on the signal.
    verify_after_s: float | None = None
    image_size: tuple[int, int] = (640, 480)  # head image (width, height): boxes are checked against it

    def __post_init__(self) -> None:
        for name in ("planner_timeout_s", "max_grasp_duration_s", "max_episode_duration_s",
                     "tracker_init_timeout_s", "reset_timeout_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"episode.{name} must be a positive number of seconds, got {v!r}")
        if self.verify_after_s is not None and not (
                isinstance(self.verify_after_s, (int, float)) and math.isfinite(self.verify_after_s)
                and self.verify_after_s > 0):
            raise ConfigError(f"episode.verify_after_s must be a positive number of seconds or null, "
                              f"got {self.verify_after_s!r}")
        for name in ("verify_settle_s", "verify_interval_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"episode.{name} must be >= 0 seconds, got {v!r}")
        for name in ("planner_retries", "max_verify_failures", "max_failed_attempts"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "planner_retries" else 1):
                raise ConfigError(f"episode.{name} must be a non-negative integer (>= 1 for limits), got {v!r}")


# ---- the machine -----------------------------------------------------------------------------
@dataclass
class _Counters:
    attempts: int = 0
    successes: int = 0
    failed_attempts_in_a_row: int = 0
    verify_failures: int = 0
    planner_failures: int = 0
    planner_requests: int = 0


@dataclass
class EpisodeMachine:
    """One episode at a time; `step(now, events)` -> actions. Not thread-safe: one caller (the runner)."""

    config: EpisodeConfig = field(default_factory=EpisodeConfig)
    phase: Phase = Phase.IDLE
    prompt: str = ""
    manual: bool = False
    instruction: str | None = None
    box: tuple[int, int, int, int] | None = None
    outcome: str | None = None
    reason: str = ""
    last_error: str = ""
    history: list = field(default_factory=list)  # (t, phase) transitions, for logs and tests

    def __post_init__(self) -> None:
        self.counters = _Counters()
        self._token = 0
        self._awaiting: int | None = None       # token of the planner call we wait for
        self._awaiting_task: str | None = None
        self._asked_at = 0.0
        self._phase_since = 0.0
        self._episode_start = 0.0
        self._attempt_start = 0.0
        self._signal_since: float | None = None  # hand closed + arm lifted since
        self._last_verify_end = -math.inf
        self._after_reset: tuple[str, str] | None = None  # (outcome, reason) to end with after the reset
        self._now = 0.0

    # ---- public ----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.phase not in (Phase.IDLE, Phase.ENDED)

    def status(self) -> dict:
        return {"phase": self.phase.value, "prompt": self.prompt, "manual": self.manual,
                "instruction": self.instruction, "box": list(self.box) if self.box else None,
                "outcome": self.outcome, "reason": self.reason, "last_error": self.last_error,
                "phase_age_s": self._now - self._phase_since, **vars(self.counters)}

    def step(self, now: float, events=()) -> list:
        """Apply `events` (in order) at time `now`, then the time limits. Returns the actions to perform."""
        self._now = now
        out: list = []
        for ev in events:
            self._on_event(now, ev, out)
        self._on_time(now, out)
        return out

    # ---- helpers ---------------------------------------------------------------------------
    def _enter(self, now: float, phase: Phase) -> None:
        self.phase = phase
        self._phase_since = now
        self.history.append((now, phase))

    def _ask(self, now: float, task: str, out: list, phase: Phase) -> None:
        self._token += 1
        self._awaiting, self._awaiting_task = self._token, task
        self._asked_at = now
        self.counters.planner_requests += 1
        text = {"prompt": self.prompt} if task in ("instruction", "complete") else {"instruction": self.instruction}
        out.append(RequestPlanner(self._token, task, **text))
        self._enter(now, phase)

    def _reset(self, now: float, out: list, place: bool, then: tuple[str, str] | None) -> None:
        """Controller off, arm to safety; then either continue (then=None) or end with `then`."""
        out.append(DisableController())
        out.append(ResetArm(place=place))
        self._after_reset = then
        self._awaiting = None
        self._signal_since = None
        self._enter(now, Phase.RESETTING)

    def _end(self, now: float, outcome: str, reason: str, out: list) -> None:
        self.outcome, self.reason = outcome, reason
        out.append(EpisodeEnded(outcome, reason))
        self._awaiting = None
        self._enter(now, Phase.ENDED)

    def _controller_may_be_on(self) -> bool:
        return self.phase in (Phase.GRASPING, Phase.VERIFYING)

    def _attempt_failed(self, now: float, reason: str, out: list) -> None:
        self.counters.failed_attempts_in_a_row += 1
        self.last_error = reason
        then = None
        if self.counters.failed_attempts_in_a_row >= self.config.max_failed_attempts:
            then = ("failed", f"{self.counters.failed_attempts_in_a_row} failed grasp attempts in a row "
                              f"(last: {reason})")
        self._reset(now, out, place=False, then=then)

    def _next_grasp(self, now: float, out: list) -> None:
        if self.manual:
            self._end(now, "attempt_done", "manual grasp attempt finished", out)
        elif self.config.check_complete_first or self.counters.attempts:
            self._ask(now, "complete", out, Phase.CHECKING_COMPLETE)
        else:
            self._ask(now, "instruction", out, Phase.PROPOSING)

    def _accept_box(self, now: float, box, image_id: str | None, out: list) -> bool:
        w, h = self.config.image_size
        try:
            x1, y1, x2, y2 = validate_box(list(box), w, h)
        except (ReplyError, TypeError) as exc:
            self.last_error = f"box rejected: {exc}"
            return False
        self.box = (int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
        out.append(InitTracker(self.box, image_id))
        self._enter(now, Phase.INIT_MASK)
        return True

    # ---- events ----------------------------------------------------------------------------
    def _on_event(self, now: float, ev, out: list) -> None:
        if isinstance(ev, Start):
            if self.active:
                self.last_error = f"Start ignored: an episode is running ({self.phase.value})"
                return
            self.__post_init__()
            self.prompt, self.manual = ev.prompt.strip(), bool(ev.manual)
            self.instruction = self.box = self.outcome = None
            self.reason = self.last_error = ""
            self._episode_start = now
            out.append(SnapshotInitialImage())
            if self.manual:
                out.append(RequestOperatorBox())
                self._enter(now, Phase.AWAIT_OPERATOR_BOX)
            elif not self.prompt:
                self._end(now, "failed", "planner mode needs a non-empty prompt", out)
            else:
                self._next_grasp(now, out)
        elif isinstance(ev, Abort):
            if not self.active:
                return
            if self.phase == Phase.RESETTING:
                self._after_reset = ("aborted", ev.reason)
            else:
                self._reset(now, out, place=False, then=("aborted", ev.reason))
        elif isinstance(ev, PlannerAnswer):
            self._on_planner(now, ev, out)
        elif isinstance(ev, OperatorBox):
            if self.phase == Phase.AWAIT_OPERATOR_BOX and not self._accept_box(now, ev.box, None, out):
                out.append(RequestOperatorBox())  # ask again, with last_error saying why
        elif isinstance(ev, TrackerReady):
            if self.phase != Phase.INIT_MASK:
                return
            if ev.ok:
                self.counters.attempts += 1
                self.counters.verify_failures = 0
                self._attempt_start = now
                self._signal_since = None
                self._last_verify_end = -math.inf
                out.append(EnableController())
                self._enter(now, Phase.GRASPING)
            else:
                self._attempt_failed(now, f"mask/tracker init failed: {ev.reason}", out)
        elif isinstance(ev, TrackerLost):
            if self._controller_may_be_on():
                self._attempt_failed(now, f"tracker lost the target: {ev.reason}", out)
        elif isinstance(ev, GraspSignal):
            if ev.hand_closed and ev.arm_lifted:
                if self._signal_since is None:
                    self._signal_since = now
            else:
                self._signal_since = None
        elif isinstance(ev, OperatorEndGrasp):
            if self._controller_may_be_on():
                # Upstream: Enter ends the attempt; whether it worked is judged by the completion check.
                self._reset(now, out, place=True, then=None)
        elif isinstance(ev, HomeReached):
            if self.phase != Phase.RESETTING:
                return
            if self._after_reset is not None:
                self._end(now, *self._after_reset, out)
            else:
                self._next_grasp(now, out)

    def _planner_failed(self, now: float, task: str, reply: PlannerReply, out: list) -> None:
        """Retry the same request, or give up safely with an explicit outcome."""
        self.counters.planner_failures += 1
        self.last_error = f"planner {task} failed ({reply.error_code}): {reply.error_message}"
        if self.counters.planner_failures > self.config.planner_retries:
            reason = f"{self.counters.planner_failures} planner failures in a row; last: {self.last_error}"
            if self._controller_may_be_on() or task == "verify":
                self._reset(now, out, place=False, then=("planner_failed", reason))
            else:
                self._end(now, "planner_failed", reason, out)
            return
        if task == "verify":
            # Go on grasping; verification is asked again when the signal still holds.
            self._awaiting = None
            self._last_verify_end = now
            self._enter(now, Phase.GRASPING)
        else:
            self._ask(now, task, out, self.phase)

    def _on_planner(self, now: float, ev: PlannerAnswer, out: list) -> None:
        if ev.token != self._awaiting:
            return  # an answer to a request we no longer wait for: ignored
        task, reply = self._awaiting_task, ev.reply
        self._awaiting = None
        if not reply.ok:
            self._planner_failed(now, task, reply, out)
            return
        self.counters.planner_failures = 0
        r = reply.result
        if task == "complete":
            if r.get("completed") is True:
                self._end(now, "completed", f"planner: prompt complete ({r.get('reasoning', '')})", out)
            else:
                self._ask(now, "instruction", out, Phase.PROPOSING)
        elif task == "instruction":
            self.instruction = r["instruction"]
            self._ask(now, "bbox", out, Phase.LOCATING)
        elif task == "bbox":
            if not self._accept_box(now, r.get("bbox"), r.get("image_id"), out):
                self._planner_failed(now, "bbox", PlannerReply(reply.request_id, reply.episode_id, "bbox", False,
                                                                 error_code="invalid_reply",
                                                                 error_message=self.last_error), out)
        elif task == "verify":
            self._last_verify_end = now
            if r.get("success") is True:
                self.counters.successes += 1
                self.counters.failed_attempts_in_a_row = 0
                self._reset(now, out, place=True, then=None)
            else:
                self.counters.verify_failures += 1
                if self.counters.verify_failures >= self.config.max_verify_failures:
                    self._attempt_failed(now, f"{self.counters.verify_failures} failed verifications", out)
                else:
                    self._enter(now, Phase.GRASPING)

    # ---- time ------------------------------------------------------------------------------
    def _on_time(self, now: float, out: list) -> None:
        cfg = self.config
        if not self.active:
            return
        if now - self._episode_start >= cfg.max_episode_duration_s and self.phase != Phase.RESETTING:
            self._reset(now, out, place=False,
                        then=("timeout", f"episode exceeded {cfg.max_episode_duration_s:g} s"))
            return
        if self._awaiting is not None and now - self._asked_at >= cfg.planner_timeout_s + PLANNER_GRACE_S:
            # The planner owes us a (timeout) answer by its deadline; never wait past it plus a grace.
            token, task = self._awaiting, self._awaiting_task
            self._on_planner(now, PlannerAnswer(token, PlannerReply(
                "", "", task, False, error_code="timeout",
                error_message=f"no answer within {cfg.planner_timeout_s:g} s (+{PLANNER_GRACE_S:g} s grace)")), out)
            return
        age = now - self._phase_since
        if self.phase == Phase.INIT_MASK and age >= cfg.tracker_init_timeout_s:
            self._attempt_failed(now, f"tracker init did not finish in {cfg.tracker_init_timeout_s:g} s", out)
        elif self.phase == Phase.RESETTING and age >= cfg.reset_timeout_s:
            out.append(DisableController())
            self._end(now, "fault", f"arm did not reach home within {cfg.reset_timeout_s:g} s", out)
        elif self._controller_may_be_on() and now - self._attempt_start >= cfg.max_grasp_duration_s:
            # Upstream's monitor_execution_time: the attempt ends, completion is checked next.
            self.counters.failed_attempts_in_a_row += 1
            self.last_error = f"grasp attempt exceeded {cfg.max_grasp_duration_s:g} s"
            then = None
            if self.manual:
                then = ("attempt_done", self.last_error)
            elif self.counters.failed_attempts_in_a_row >= cfg.max_failed_attempts:
                then = ("failed", f"{self.counters.failed_attempts_in_a_row} failed grasp attempts in a row "
                                  f"(last: {self.last_error})")
            self._reset(now, out, place=False, then=then)
        elif self.phase == Phase.GRASPING and not self.manual and self._verify_due(now):
            self._ask(now, "verify", out, Phase.VERIFYING)

    def _verify_due(self, now: float) -> bool:
        """Upstream verifies while the hand is up; here: closed + lifted held for verify_settle_s, or
        the attempt has run verify_after_s; never sooner than verify_interval_s after the last verdict."""
        cfg = self.config
        if now - self._last_verify_end < cfg.verify_interval_s:
            return False
        signalled = self._signal_since is not None and now - self._signal_since >= cfg.verify_settle_s
        timed = cfg.verify_after_s is not None and now - self._attempt_start >= cfg.verify_after_s
        return signalled or timed
