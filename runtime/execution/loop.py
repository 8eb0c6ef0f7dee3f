"""The fixed-rate control loop: robot state in, one safe joint command out, every cycle.

Per cycle (paced by runtime.rate.Rate on absolute deadlines): read the latest robot state from the
bridge, take a new chunk if the policy worker produced one, pick the setpoint for now (or hold),
pass it through the safety filter, send it, and ask for the next chunk when it is time. Nothing in
a cycle blocks: inference, tracking, capture and telemetry live in other threads and hand over
through mailboxes and bounded queues. The loop holds (decelerates within limits and stays) when
the chunk, the perception or the robot state is stale, and says why (`hold_reason`, events).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.clock import Clock
from runtime.errors import DexGraspError, StaleDataError
from runtime.execution.executor import ChunkExecutor
from runtime.execution.requests import ChunkRequests
from runtime.execution.safety import SafetyFilter
from runtime.mailbox import Mailbox
from runtime.rate import Rate
from runtime.stats import LatencyStats

log = logging.getLogger(__name__)

Publish = Callable[..., None]


def _no_publish(kind: str, *args: Any) -> None:
    return None


HISTOGRAM_BINS_US = (0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 50000, math.inf)


def effective_auto_rearm(cfg) -> bool:
    """Whether the loop may re-arm by itself after a safe-off or link loss: only with
    safety.auto_rearm AND a simulated robot. On real hardware (bridge.kind "serial" or "ros2") motion after a
    stall resumes only on an operator's `arm`, whatever the config says (config validation refuses
    auto_rearm there too; this is the runtime's own guard)."""
    from runtime.robot.link import is_real_hardware

    return bool(cfg.safety.auto_rearm) and not is_real_hardware(cfg.bridge.kind)


def lateness_histogram(lateness_s: np.ndarray) -> dict:
    """Cycle counts per wake-up lateness bin ("<50us": ...), for reports and benchmarks."""
    counts, _ = np.histogram(np.asarray(lateness_s) * 1e6, bins=np.asarray(HISTOGRAM_BINS_US))
    labels = [f"<{b:g}us" if math.isfinite(b) else f">={HISTOGRAM_BINS_US[-2]:g}us" for b in HISTOGRAM_BINS_US[1:]]
    return dict(zip(labels, (int(c) for c in counts), strict=True))


class ControlLoop:
    """Owns the executor and the safety filter; talks to the bridge. See module docstring.

    bridge: BridgeHost-like (latest_state(max_age_s), send_targets(q, t_target), arm(), disarm(),
            protective_stop(), clear_stop(), link_up, needs_rearm).
    perception_age_s: callable(now) -> age of the newest head frame (inf if none).
    publish: callable(kind, *args), must not block (the app's telemetry dispatcher).
    """

    def __init__(
        self,
        bridge,
        executor: ChunkExecutor,
        safety: SafetyFilter,
        chunks: Mailbox,
        requests: ChunkRequests,
        rate_hz: float,
        clock: Clock | None = None,
        max_state_age_s: float = 0.05,
        max_perception_age_s: float = 0.5,
        perception_age_s: Callable[[float], float] | None = None,
        auto_rearm: bool = False,
        publish: Publish | None = None,
        stop_hold_s: float = 0.5,
        on_thread_start: Callable[[], Any] | None = None,
    ) -> None:
        self.bridge = bridge
        self.executor = executor
        self.safety = safety
        self.chunks = chunks
        self.requests = requests
        self.clock = clock or Clock()
        self.rate = Rate(rate_hz, self.clock, name="control")
        self.period_s = 1.0 / rate_hz
        self.max_state_age_s = max_state_age_s
        self.max_perception_age_s = max_perception_age_s
        self.perception_age_s = perception_age_s or (lambda now: 0.0)
        self.auto_rearm = auto_rearm
        self.publish = publish or _no_publish
        self.stop_hold_s = stop_hold_s
        self.on_thread_start = on_thread_start

        self.policy_enabled = threading.Event()
        self._commands: queue.Queue = queue.Queue(maxsize=64)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._chunk_seq = 0
        self._need_resync = True
        self._stopped = False  # protective stop latched until "clear"
        self._homing = False  # executing a homing motion (no policy, no camera needed)
        # Generation (epoch) of requests and chunks: disable, home, clear and protective stop advance
        # it, so a chunk from an inference that was already running when the motion changed (its
        # observation predates the new generation) is dropped instead of overriding e.g. homing.
        self.generation = 0
        self._generation_t = -math.inf
        self.chunks_dropped_old_generation = 0
        self.homes_completed = 0  # explicit counter for waiters (App.go_home), not an event string
        # (request id, outcome) of the last homing that ended: "reached", "ignored" or "aborted";
        # App.go_home waits for its own id here instead of scanning the event log.
        self.home_done: tuple[int, str] = (0, "none")
        self._home_id = 0  # request id of the homing in progress
        self._arm_requested = False  # an operator's "arm" waiting for the next resync
        self._operator_disarmed = False  # a commanded "disarm": only "arm" re-arms (not auto_rearm)
        self.hold_reason: str | None = "starting"
        self.hold_cycles: Counter = Counter()
        self.events: deque = deque(maxlen=200)  # recent events only; the loop runs for days
        self.events_dropped = 0
        self.errors: list[str] = []
        self.commands_sent = 0
        self.send_errors = 0
        self.cycle_work = LatencyStats(200_000)
        # Observation -> actuation: a chunk's observation time to the end of the first serial write
        # whose setpoint came from it (what a robot team asks first: how old is what the arm does?).
        self.obs_to_actuation = LatencyStats(10_000)
        self._unsent_obs_t: float | None = None  # t_obs of an accepted chunk not yet on the wire
        self.last_command: np.ndarray | None = None
        self.last_state = None
        self.thread_setup: Any = None
        self._t_started = math.nan
        self._t_first_cycle = math.nan
        self._t_last_cycle = math.nan
        self._cycles_at_stop: int | None = None

    # ---- thread-safe controls (any thread) -------------------------------------------------------
    def submit(self, command: str, **kwargs: Any) -> bool:
        """Queue a command for the loop thread ('stop', 'clear', 'arm', 'disarm', 'enable', 'disable',
        'home' with target= and request_id=). Never blocks;
        False if the queue is full (the loop is wedged, which the report will show)."""
        try:
            self._commands.put_nowait((command, kwargs))
            return True
        except queue.Full:
            self._note_error(f"command queue full, dropped '{command}'")
            return False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("control loop already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Ask the loop to hold, disarm and exit; join with a timeout (warns if still alive)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("control-loop thread still alive %.1f s after stop", timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        if self.on_thread_start is not None:
            try:
                self.thread_setup = self.on_thread_start()
            except Exception as exc:  # real-time setup is optional: report and carry on
                self._note_error(f"control thread setup failed: {exc!r}")
        self._t_started = self.clock.now()
        try:
            while not self._stop.is_set():
                tick = self.rate.sleep()
                t0 = time.perf_counter()
                now = self.clock.now()
                if tick.index == 0:
                    self._t_first_cycle = now
                self.step(now, tick.deadline + self.period_s)
                self._t_last_cycle = now
                self.cycle_work.add(time.perf_counter() - t0)
            self._cycles_at_stop = self.rate.cycles
            self._safe_stop()
        except Exception as exc:
            self._note_error(f"control loop crashed: {exc!r}")
            log.exception("control loop crashed; protective stop")
            self._try(self.bridge.protective_stop, "protective_stop")
            raise

    def _safe_stop(self) -> None:
        """Hold (decelerate within limits) for up to stop_hold_s, then disarm."""
        self.policy_enabled.clear()
        self._clear_chunks()
        deadline = self.clock.now() + self.stop_hold_s
        while self.clock.now() < deadline and not self._stopped and not self._need_resync:
            tick = self.rate.sleep()
            self.step(self.clock.now(), tick.deadline + self.period_s)
            if np.max(np.abs(self.safety.velocity)) < 1e-6:
                break
        self._try(self.bridge.disarm, "disarm")
        self._event("stopped: held and disarmed")

    def step(self, now: float, t_target: float) -> np.ndarray | None:
        """One cycle at time `now`; returns the command sent (None if nothing was sent)."""
        self._drain_commands(now)
        state = self._read_state()
        if self._stopped:
            return self._hold("protective_stop", now)
        if state is None:
            self._need_resync = True
            return self._hold("robot_state_stale" if self.bridge.link_up else "link_down", now)
        self.last_state = state
        self.publish("joint_state", state)
        if self._need_resync and not self._resync(state, now):
            return None

        item = self.chunks.peek()
        if item is not None and item.seq != self._chunk_seq:
            self._chunk_seq = item.seq
            if self._is_old_generation(item.value):
                self.chunks_dropped_old_generation += 1
                self._event(f"chunk {item.value.seq} dropped: older generation (now {self.generation})")
            elif not self.executor.offer(item.value, now):
                self._event(f"chunk rejected: {self.executor.last_reject_reason}")
            else:
                self._unsent_obs_t = item.value.t_obs

        target, reason = None, None
        enabled = self.policy_enabled.is_set()
        perception_age = self.perception_age_s(now)
        if self._homing:
            target = self.executor.setpoint(now)
            if target is None:
                self._homing = False
                self.homes_completed += 1
                self.home_done = (self._home_id, "reached")
                self._event("home reached")
            reason = "homing" if target is not None else "policy_disabled"
            enabled = False
        elif not enabled:
            reason = "policy_disabled"
        elif perception_age > self.max_perception_age_s:
            reason = "perception_stale"
        else:
            target = self.executor.setpoint(now)
            if target is None:
                reason = "waiting_for_chunk"
        q_cmd, accepted = self.safety.apply(target)
        if not accepted:
            reason = "nonfinite_target"
        self._set_hold(reason, now, perception_age)
        before = self.commands_sent
        sent = self._send(q_cmd, t_target)
        if self._unsent_obs_t is not None and reason is None and self.commands_sent > before:
            self.obs_to_actuation.add(max(0.0, self.clock.now() - self._unsent_obs_t))
            self._unsent_obs_t = None
        if enabled and perception_age <= self.max_perception_age_s and self.executor.should_request(
            now, self.requests.in_flight
        ):
            if self.requests.request(now):
                self.executor.note_request()
        return sent

    # ---- helpers ---------------------------------------------------------------------------------
    def _advance_generation(self, now: float) -> None:
        """Start a new generation: every chunk computed from an earlier observation is stale."""
        self.generation += 1
        self._generation_t = now
        self.requests.cancel()
        set_gen = getattr(self.requests, "set_generation", None)
        if set_gen is not None:
            set_gen(self.generation)

    def _is_old_generation(self, chunk) -> bool:
        """A chunk stamped with a generation must match; an unstamped one must have been observed
        after the generation began (an inference running across disable/home predates it). While
        homing, no policy chunk is taken at all."""
        gen = getattr(chunk, "generation", None)
        if gen is not None and gen != self.generation:
            return True
        return self._homing or chunk.t_obs < self._generation_t

    def _clear_chunks(self) -> None:
        self.executor.clear()
        self._unsent_obs_t = None

    def _read_state(self):
        try:
            return self.bridge.latest_state(self.max_state_age_s)
        except StaleDataError:
            return None

    def _resync(self, state, now: float) -> bool:
        """Restart the command stream from the measured position (after start, link loss, stop)."""
        if getattr(self.bridge, "needs_rearm", False) or not getattr(self.bridge, "armed", True):
            # Arming at start-up is the operator starting the runtime; afterwards (safe-off, link
            # loss, a cleared stop) only an explicit "arm" command, or auto_rearm in the sim.
            # An operator's "disarm" is undone only by an operator's "arm".
            may_arm = self._arm_requested or (
                not self._operator_disarmed and (self.auto_rearm or self.hold_reason == "starting"))
            if not may_arm:
                self._hold("needs_rearm", now)
                return False
            self._arm_requested = False
            if not self._try(self.bridge.arm, "arm"):
                self._hold("arm_failed", now)
                return False
            self._operator_disarmed = False
            self._event("armed")
        positions = np.asarray(state.positions, dtype=np.float64)
        if not self.safety.reset(positions):
            # A NaN/Inf state read must not crash the loop: hold (send nothing, the firmware holds)
            # and retry the resync on the next fresh state.
            self._note_error(f"resync refused: {self.safety.reset_error}")
            self._hold("measured_state_nonfinite", now)
            return False
        self._clear_chunks()
        self.requests.cancel()
        self._need_resync = False
        self._event("command stream (re)synchronised to the measured position")
        return True

    def _send(self, q_cmd: np.ndarray, t_target: float) -> np.ndarray | None:
        try:
            sent = self.bridge.send_targets(q_cmd, t_target)
        except (DexGraspError, OSError, ValueError) as exc:
            self.send_errors += 1
            self._need_resync = True
            self._note_error(f"send_targets failed: {exc}")
            return None
        self.commands_sent += 1
        # Publish what actually went on the wire (the bridge may refine it), not what we asked for.
        actual = q_cmd if sent is None else np.asarray(sent, dtype=np.float64)
        self.last_command = actual
        self.publish("command", actual, t_target)
        return sent

    def _hold(self, reason: str, now: float) -> None:
        """Hold without sending (no link, no session, protective stop: the firmware holds itself)."""
        self._set_hold(reason, now, None)
        return None

    def _set_hold(self, reason: str | None, now: float, perception_age: float | None) -> None:
        if reason is not None:
            self.hold_cycles[reason] += 1
        if reason != self.hold_reason:
            if reason is None:
                self._event(f"executing (was holding: {self.hold_reason})")
            else:
                detail = ""
                if reason == "perception_stale" and perception_age is not None:
                    detail = f" (head frame {perception_age * 1e3:.0f} ms old, max {self.max_perception_age_s * 1e3:.0f} ms)"
                elif reason == "waiting_for_chunk" and self.executor.last_reject_reason:
                    detail = f" ({self.executor.last_reject_reason})"
                self._event(f"holding: {reason}{detail}")
            self.hold_reason = reason
            self.publish("status", self.status())

    def _drain_commands(self, now: float) -> None:
        while True:
            try:
                command, kwargs = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "stop":
                self._try(self.bridge.protective_stop, "protective_stop")
                self._stopped = True
                self._arm_requested = False
                self._end_homing("aborted")
                self.policy_enabled.clear()
                self._clear_chunks()
                self._advance_generation(now)
                self._event("protective stop (commanded)")
            elif command == "clear":
                if self._stopped:
                    self._try(self.bridge.clear_stop, "clear_stop")
                    self._stopped = False
                    self._advance_generation(now)
                    self._need_resync = True
                    # Lifting the latch does not re-arm: motion needs an operator's "arm".
                    self._arm_requested = False
                    self._event("protective stop cleared (send arm to enable motion)")
            elif command == "arm":
                if self._stopped:
                    self._event("arm refused: protective stop latched (send clear first)")
                elif getattr(self.bridge, "needs_rearm", False) or not getattr(self.bridge, "armed", True):
                    self._arm_requested = True
                    self._need_resync = True  # re-arms and restarts from the measured position
                    self._event("arm requested by the operator")
                else:
                    self._event("arm: already armed")
            elif command == "disarm":
                # The operator's disarm (e.g. RobotLink.disarm() across the process boundary): no
                # more targets from here, the bridge disarms (the robot decelerates within its own
                # limits and holds) and only an explicit "arm" moves again.
                self._end_homing("aborted")
                self.policy_enabled.clear()
                self._clear_chunks()
                self._advance_generation(now)
                self._arm_requested = False
                self._operator_disarmed = True
                self._need_resync = True
                self._try(self.bridge.disarm, "disarm")
                self._event("disarmed (commanded; send arm to enable motion)")
            elif command == "home":
                self._end_homing("aborted")
                self._home_id = int(kwargs.get("request_id", 0) or 0)
                if not self._start_homing(np.asarray(kwargs.get("target"), dtype=np.float64), now):
                    self.home_done = (self._home_id, "ignored")
            elif command == "enable":
                self._end_homing("aborted")
                self.policy_enabled.set()
            elif command == "disable":
                self._end_homing("aborted")
                self.policy_enabled.clear()
                self._clear_chunks()
                self._advance_generation(now)
            else:
                self._note_error(f"unknown loop command {command!r}")

    def _end_homing(self, outcome: str) -> None:
        """A homing in progress ends without reaching home (stop, enable, disable, a new home)."""
        if self._homing:
            self._homing = False
            self.home_done = (self._home_id, outcome)

    def _start_homing(self, target: np.ndarray, now: float) -> bool:
        """Move to `target` on a straight joint-space line (cosine time profile, at most half the
        velocity limit; the safety filter still shapes it); the policy is disabled. Ends with the
        event "home reached"."""
        if self._stopped or not self.safety.ready or target.shape != (self.safety.limits.n,) \
                or not np.all(np.isfinite(target)):
            self._note_error(f"home ignored (stopped, not synchronised or bad target {target!r})")
            return False
        from runtime.execution.chunk import TimedChunk

        start = self.safety.position
        lim = self.safety.limits
        target = np.clip(target, lim.lower, lim.upper)
        # cosine profile: starts and ends at rest, peak speed (pi/2) * distance / duration
        duration_s = float(np.max(np.pi / 2 * np.abs(target - start) / (0.5 * lim.max_velocity)))
        dt = self.executor.action_dt_s
        n = max(2, int(np.ceil(duration_s / dt)) + 1)
        u = 0.5 - 0.5 * np.cos(np.pi * np.linspace(0.0, 1.0, n))[:, None]
        # No observation behind a homing motion: stamp it with its end so the age limit (meant for
        # policy actions) never cuts it short.
        chunk = TimedChunk(start + u * (target - start), t_obs=now + (n - 1) * dt, t_start=now, dt_s=dt,
                           seq=-1, t_ready=now)
        self.policy_enabled.clear()
        self._advance_generation(now)
        self._unsent_obs_t = None
        self.executor.start_homing(chunk, now)
        self._homing = True
        self._event(f"homing ({duration_s:.1f} s)")
        return True

    def _try(self, fn: Callable[[], Any], what: str) -> bool:
        try:
            fn()
            return True
        except (DexGraspError, OSError, ValueError, RuntimeError) as exc:
            self._note_error(f"bridge {what} failed: {exc}")
            return False

    def _event(self, text: str) -> None:
        t = self.clock.now() - (self._t_started if math.isfinite(self._t_started) else 0.0)
        if len(self.events) == self.events.maxlen:
            self.events_dropped += 1
        self.events.append((round(t, 4), text))
        log.info("control: %s", text)
        self.publish("episode_event", {"source": "control", "t": t, "event": text})

    def _note_error(self, text: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(text)
        log.warning("control: %s", text)

    def progress(self) -> dict:
        """A cheap snapshot for live status lines (any thread)."""
        return {
            "achieved_hz": self.rate.achieved_hz(),
            "missed_cycles": self.rate.missed_cycles,
            "chunks_accepted": self.executor.counters.chunks_accepted,
            "hold_reason": self.hold_reason,
            "homes_completed": self.homes_completed,
            "home_done": self.home_done,
            "chunks_dropped_old_generation": self.chunks_dropped_old_generation,
        }

    def status(self) -> dict:
        return {
            "hold_reason": self.hold_reason,
            "policy_enabled": self.policy_enabled.is_set(),
            "protective_stop": self._stopped,
            "commands_sent": self.commands_sent,
        }

    def achieved_hz(self) -> float:
        """Cycles per second over the running phase (first to last cycle before the stop request;
        the safe-stop cycles and the time after the loop ended are not counted)."""
        n = self.rate.cycles if self._cycles_at_stop is None else self._cycles_at_stop
        span = self._t_last_cycle - self._t_first_cycle
        if not (n >= 2 and span > 0):
            return self.rate.achieved_hz()
        return (n - 1) / span

    def report(self) -> dict:
        r = self.rate.report()
        r["rate_hz_achieved"] = self.achieved_hz()
        return {
            **r,
            "cycle_work_us": {k: v for k, v in self.cycle_work.summary_us().items() if k in ("p50", "p99", "max")},
            "obs_to_actuation_ms": {k: v for k, v in self.obs_to_actuation.summary_ms().items()
                                    if k in ("count", "p50", "p99", "max")},
            "commands_sent": self.commands_sent,
            "send_errors": self.send_errors,
            "hold_cycles": dict(self.hold_cycles),
            "hold_reason_at_end": self.hold_reason,
            "safety": self.safety.counters.as_dict(),
            "executor": self.executor.counters.as_dict(),
            "generation": self.generation,
            "chunks_dropped_old_generation": self.chunks_dropped_old_generation,
            "homes_completed": self.homes_completed,
            "home_done": list(self.home_done),
            "events": list(self.events)[-50:],
            "events_dropped": self.events_dropped,
            "thread_setup": self.thread_setup,
            "lateness_histogram": lateness_histogram(self.rate.lateness.samples()),
        }
