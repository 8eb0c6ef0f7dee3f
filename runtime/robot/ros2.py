"""A ROS 2 arm over DDS (cyclonedds, no rclpy): a RobotLink for an arm driven by ros2_control.

Wire (ROS 2 topic mangling: `/name` travels as `rt/name`, type `pkg/msg/T` as `pkg::msg::dds_::T_`):
  commands  rt/<controller>/joint_trajectory  trajectory_msgs/JointTrajectory  (joint_trajectory_controller)
            rt/<controller>/commands          std_msgs/Float64MultiArray       (forward position controller)
            QoS: ROS 2 default (reliable, keep last 10, volatile).
  state     rt/joint_states                   sensor_msgs/JointState (joint_state_broadcaster)
            QoS: ROS 2 default, or "sensor_data" (best effort, keep last 5, matches any writer).

Joints are matched by NAME: `joint_names` are the runtime's names (in the runtime's order) and
`controller_joints` the controller's names for the same joints, index for index (for a forward
position controller, which reads bare values, this must be the order of the controller's `joints`
parameter). No command is ever written before a JointState naming every configured joint has
arrived; `connect()` refuses a controller that does not know one of them (ConfigError naming it).

Watchdog: a reader thread takes JointState samples (stamped with the runtime's monotonic receive
time; the sender's header stamp is another host's clock and is not trusted for age) and, every
`watchdog_period_s`, checks the stream: state older than `state_max_age_s`, the command topic's
subscriber gone (controller unloaded / crashed) or the joint names changed. Any of these makes
`link_up` false, refuses targets (StaleDataError / DeviceNotConnectedError, nothing written), and
when armed disarms and latches `needs_rearm` with the cause in `health()` and `counters()`.
"Holding" is the controller's own: joint_trajectory_controller stops at the end of the last
(short) trajectory point, a forward position controller keeps the last command. A protective stop
sends a JointTrajectory with no points (joint_trajectory_controller: stop and hold where you are)
or, for a forward controller, the last measured positions.

Blocking: connect() blocks up to `connect_timeout_s`; arm/disarm/protective_stop/clear_stop are
local gates (no controller round trip) and never block; send_targets is one non-blocking DDS write
(keep-last history never waits for acknowledgements); close() joins the reader with a timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Literal

import numpy as np

from firmware_bridge.errors import CommandError, NotArmedError
from runtime.clock import Clock
from runtime.errors import ConfigError, DeviceNotConnectedError, StaleDataError, require
from runtime.mailbox import Mailbox
from runtime.robot.link import JointState, LinkHealth

log = logging.getLogger(__name__)

CommandType = Literal["joint_trajectory", "forward_position"]
StateQos = Literal["reliable", "sensor_data"]
COMMAND_HISTORY = 10  # ROS 2 default QoS depth
READ_BATCH = 64
READER_JOIN_TIMEOUT_S = 1.0


def ros_topic(name: str) -> str:
    """The DDS topic ROS 2 uses for `name` ("/arm/joint_states" -> "rt/arm/joint_states")."""
    name = name.strip().strip("/")
    if not name:
        raise ConfigError("ROS 2 topic/controller name is empty")
    return f"rt/{name}"


def command_topic(controller: str, command_type: CommandType) -> str:
    suffix = "joint_trajectory" if command_type == "joint_trajectory" else "commands"
    return ros_topic(f"{controller.strip('/')}/{suffix}")


def _qos(reliable: bool, depth: int):
    from cyclonedds.core import Policy, Qos
    from cyclonedds.util import duration

    rel = Policy.Reliability.Reliable(duration(milliseconds=100)) if reliable else Policy.Reliability.BestEffort
    return Qos(rel, Policy.History.KeepLast(depth), Policy.Durability.Volatile)


class Ros2ArmLink:
    """See module docstring. `dds` is a runtime.telemetry.config.DdsConfig (network settings; its
    domain_id is replaced by `domain_id`), None for Cyclone's defaults / CYCLONEDDS_URI."""

    def __init__(
        self,
        joint_names: Sequence[str],
        controller_joints: Sequence[str] | None = None,
        controller: str = "joint_trajectory_controller",
        command_type: CommandType = "joint_trajectory",
        state_topic: str = "joint_states",
        domain_id: int = 0,
        dds=None,
        state_max_age_s: float = 0.1,
        state_qos: StateQos = "reliable",
        connect_timeout_s: float = 5.0,
        min_time_from_start_s: float = 0.005,
        require_subscriber: bool = True,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        watchdog_period_s: float | None = None,
        clock: Clock | None = None,
        name: str = "ros2-arm",
    ) -> None:
        self.joint_names = tuple(joint_names)
        self.controller_joints = tuple(controller_joints) if controller_joints is not None else self.joint_names
        if len(self.controller_joints) != len(self.joint_names) or not self.joint_names:
            raise ConfigError(f"{name}: {len(self.joint_names)} runtime joints but {len(self.controller_joints)} "
                              "controller joints; they must pair up one to one")
        for label, names in (("runtime", self.joint_names), ("controller", self.controller_joints)):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ConfigError(f"{name}: {label} joint names repeat {dup}")
        if command_type not in ("joint_trajectory", "forward_position"):
            raise ConfigError(f"{name}: command_type must be joint_trajectory or forward_position, got {command_type!r}")
        if state_qos not in ("reliable", "sensor_data"):
            raise ConfigError(f"{name}: state_qos must be reliable or sensor_data, got {state_qos!r}")
        if not state_max_age_s > 0:
            raise ConfigError(f"{name}: state_max_age_s must be > 0, got {state_max_age_s}")
        self.n = len(self.joint_names)
        self.controller = controller
        self.command_type: CommandType = command_type
        self.command_topic = command_topic(controller, command_type)
        self.state_topic = ros_topic(state_topic)
        self.domain_id = int(domain_id)
        self.dds = dds
        self.state_max_age_s = float(state_max_age_s)
        self.state_qos = state_qos
        self.connect_timeout_s = float(connect_timeout_s)
        self.min_time_from_start_s = float(min_time_from_start_s)
        self.require_subscriber = bool(require_subscriber)
        self.lower = None if lower is None else np.asarray(lower, dtype=np.float64)
        self.upper = None if upper is None else np.asarray(upper, dtype=np.float64)
        self.watchdog_period_s = float(watchdog_period_s or min(0.05, max(0.005, self.state_max_age_s / 4)))
        self.clock = clock or Clock()
        self.name = name
        self.source = f"ros2:{self.state_topic}"
        self.state: Mailbox[JointState] = Mailbox(f"{name}.state", self.clock)

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dp = self._reader = self._writer = self._waitset = self._cond = None
        self._types = None
        self._connected = False
        self._armed = False
        self._needs_rearm = False
        self._stopped = False
        self._names_matched = False  # a JointState naming every configured joint has arrived
        self._index_cache: tuple[tuple[str, ...], np.ndarray | None] = ((), None)
        self._name_problem = ""  # why the newest JointState's names do not fit (empty: they do)
        self._foreign_names: tuple[str, ...] = ()  # names of the last message naming none of our joints
        self._subscribers = 0
        self._cause = "not connected"
        self.last_trip_cause = ""
        self._c = dict(states_received=0, states_rejected_names=0, states_foreign=0, states_malformed=0, undecodable=0,
                       commands_sent=0, commands_refused=0, watchdog_trips=0, protective_stops=0)

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Ros2ArmLink:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self, timeout_s: float | None = None) -> dict:
        """Join the DDS domain, wait (up to timeout_s, default connect_timeout_s) for a JointState
        naming every configured joint and, if require_subscriber, for the controller's command
        subscription. Returns what was found. Raises ConfigError (a configured joint the controller
        does not publish), DeviceNotConnectedError (no state / no controller), MissingExtraError."""
        require("cyclonedds", "dds", f"{self.name} (bridge.kind ros2)")
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
        from cyclonedds.pub import DataWriter
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        from runtime.robot import ros2_types as T
        from runtime.telemetry import qos as tq
        from runtime.telemetry.config import DdsConfig

        timeout_s = self.connect_timeout_s if timeout_s is None else float(timeout_s)
        cfg = self.dds if self.dds is not None else DdsConfig(enabled=True)
        cfg = DdsConfig(**{**cfg.__dict__, "domain_id": self.domain_id, "enabled": True})
        self._types = T
        try:
            self._dp = dp = tq.participant(cfg)
            state_q = _qos(self.state_qos == "reliable", 10 if self.state_qos == "reliable" else 5)
            cmd_q = _qos(True, COMMAND_HISTORY)
            cmd_type = T.JointTrajectory_ if self.command_type == "joint_trajectory" else T.Float64MultiArray_
            self._reader = DataReader(dp, Topic(dp, self.state_topic, T.JointState_, qos=state_q), qos=state_q)
            self._writer = DataWriter(dp, Topic(dp, self.command_topic, cmd_type, qos=cmd_q), qos=cmd_q)
            self._waitset = WaitSet(dp)
            self._cond = ReadCondition(self._reader, SampleState.Any | ViewState.Any | InstanceState.Any)
            self._waitset.attach(self._cond)
        except Exception as exc:
            self._teardown()
            if isinstance(exc, ConfigError | DeviceNotConnectedError):
                raise
            raise DeviceNotConnectedError(f"{self.name}: cannot join DDS domain {self.domain_id}: {exc}") from exc
        self._stop.clear()
        with self._lock:
            self._connected = True
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-reader", daemon=True)
        self._thread.start()
        try:
            return self._wait_handshake(timeout_s)
        except BaseException:
            self.close()
            raise

    def _wait_handshake(self, timeout_s: float) -> dict:
        deadline = self.clock.now() + timeout_s
        where = f"DDS domain {self.domain_id}"
        while True:
            with self._lock:
                matched, problem, subs = self._names_matched, self._name_problem, self._subscribers
            got_state = self.state.peek() is not None or self._c["states_rejected_names"] > 0
            foreign = self._foreign_names
            if problem and not matched:
                raise ConfigError(f"{self.name}: {problem}; fix bridge.ros2.joints")
            if matched and (subs > 0 or not self.require_subscriber):
                return {"controller_joints": list(self.controller_joints), "subscribers": subs,
                        "state_topic": self.state_topic, "command_topic": self.command_topic}
            if self.clock.now() >= deadline:
                if not got_state and foreign:
                    raise ConfigError(
                        f"{self.name}: the controller does not know any configured joint "
                        f"{list(self.controller_joints)}: {self.state_topic} names {list(foreign)}; "
                        "fix bridge.ros2.joints")
                if not got_state:
                    raise DeviceNotConnectedError(
                        f"{self.name}: no sensor_msgs/JointState on {self.state_topic} within {timeout_s:g} s on "
                        f"{where} (is the robot driver running? same ROS_DOMAIN_ID / network? state_qos "
                        f"'{self.state_qos}')")
                raise DeviceNotConnectedError(
                    f"{self.name}: nothing subscribes to {self.command_topic} on {where} within {timeout_s:g} s "
                    f"(is controller '{self.controller}' loaded and active, and is it a "
                    f"{self.command_type} controller?)")
            self._stop.wait(0.005)

    def close(self, timeout_s: float = READER_JOIN_TIMEOUT_S) -> None:
        """Disarm, stop the reader (joined with timeout_s) and leave the domain. Idempotent."""
        with self._lock:
            self._armed = False
            self._connected = False
            self._cause = "closed"
        self._stop.set()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout_s)
            if th.is_alive():
                log.warning("%s: reader thread still alive after %.1f s", self.name, timeout_s)
        self._thread = None
        self._teardown()

    def _teardown(self) -> None:
        # cyclonedds deletes a C entity when its Python object goes; the participant owns the rest
        self._cond = self._waitset = self._reader = self._writer = None
        self._dp = None

    # ---- reader thread + watchdog --------------------------------------------------------------

    def _run(self) -> None:
        from cyclonedds.util import duration

        wait = duration(seconds=self.watchdog_period_s)
        try:
            while not self._stop.is_set():
                self._waitset.wait(wait)
                if self._stop.is_set():
                    return
                try:
                    samples = self._reader.take(N=READ_BATCH)
                except Exception as exc:  # an undecodable sample: count it, keep reading
                    self._c["undecodable"] += 1
                    log.warning("%s: could not decode a JointState sample: %s", self.name, exc)
                    samples = []
                t_rx = self.clock.now()
                for s in samples:
                    if getattr(s, "sample_info", None) is not None and not s.sample_info.valid_data:
                        continue
                    self._on_state(s, t_rx)
                try:
                    subs = int(self._writer.get_publication_matched_status().current_count)
                except Exception:  # noqa: BLE001 - a failed status read counts as "gone"
                    subs = 0
                with self._lock:
                    self._subscribers = subs
                self._evaluate(self.clock.now())
        except Exception:
            log.exception("%s: reader thread died; the link reports down", self.name)
            with self._lock:
                self._connected = False
                self._cause = "reader thread died"
                self._trip("reader thread died")

    def _indices(self, names: tuple[str, ...]) -> np.ndarray | None:
        """Controller-message index of each configured joint, or None when the message names only
        some of them (a mismatch: _name_problem says which). A message naming none of them (another
        driver publishing on the same topic, e.g. a gripper) is not ours: () and ignored."""
        cached_names, idx = self._index_cache
        if names == cached_names:
            return idx
        where = {n: i for i, n in enumerate(names)}
        missing = [(c, r) for c, r in zip(self.controller_joints, self.joint_names, strict=True) if c not in where]
        if len(missing) == self.n:
            idx = np.zeros(0, dtype=np.intp)
            self._foreign_names = names
        elif missing:
            idx = None
            self._name_problem = (
                "the controller does not know joint(s) "
                + ", ".join(f"'{c}' (runtime '{r}')" for c, r in missing)
                + f": {self.state_topic} names {list(names)}")
        else:
            idx = np.array([where[c] for c in self.controller_joints], dtype=np.intp)
            self._name_problem = ""
        self._index_cache = (names, idx)
        return idx

    def _on_state(self, msg, t_rx: float) -> None:
        names = tuple(msg.name)
        pos, vel = msg.position, msg.velocity
        if len(pos) != len(names):
            self._c["states_malformed"] += 1
            return
        with self._lock:
            idx = self._indices(names)
            if idx is None:
                self._c["states_rejected_names"] += 1
                return
            if idx.size == 0:
                self._c["states_foreign"] += 1
                return
            self._names_matched = True
        q = np.asarray(pos, dtype=np.float64)[idx]
        v = np.asarray(vel, dtype=np.float64)[idx] if len(vel) == len(names) else np.full(self.n, np.nan)
        self._c["states_received"] += 1
        self.state.put(JointState(self.joint_names, q, v, t_rx, self.source), t_rx)

    def _problem(self, now: float) -> str:
        """Why the link is not usable now (empty: it is). Caller holds the lock."""
        if not self._connected:
            return self._cause or "not connected"
        if self._name_problem:
            return self._name_problem
        item = self.state.peek()
        if item is None:
            return f"no joint state received on {self.state_topic}"
        age = now - item.t_capture
        if age > self.state_max_age_s:
            return (f"joint state stale: last {self.state_topic} {age * 1e3:.0f} ms ago "
                    f"(max {self.state_max_age_s * 1e3:.0f} ms)")
        if self.require_subscriber and self._subscribers == 0:
            return f"controller gone: nothing subscribes to {self.command_topic}"
        return ""

    def _evaluate(self, now: float) -> str:
        with self._lock:
            cause = self._problem(now)
            self._cause = cause
            if cause and self._armed:
                self._trip(cause)
            return cause

    def _trip(self, cause: str) -> None:
        """Watchdog: disarm and latch needs_rearm (caller holds the lock)."""
        self._armed = False
        self._needs_rearm = True
        self._c["watchdog_trips"] += 1
        self.last_trip_cause = cause
        log.warning("%s: holding, disarmed: %s", self.name, cause)

    # ---- RobotLink ---------------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        return not self._evaluate(self.clock.now())

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def needs_rearm(self) -> bool:
        return self._needs_rearm

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        """The newest matched JointState; StaleDataError if none or older than max_age_s."""
        return self.state.latest(max_age_s).value

    def arm(self) -> None:
        """Enable forwarding of targets. Refused (nothing changes) while the link is not fresh or a
        protective stop is latched."""
        with self._lock:
            if self._stopped:
                raise NotArmedError(f"{self.name}: not arming: protective stop latched (clear_stop() first)")
            cause = self._evaluate(self.clock.now())
            if cause:
                raise DeviceNotConnectedError(f"{self.name}: not arming: {cause}")
            self._armed, self._needs_rearm = True, False

    def disarm(self) -> None:
        """Stop forwarding targets; the controller finishes its last short point and holds."""
        with self._lock:
            self._armed = False

    def protective_stop(self) -> None:
        """Latch a stop and tell the controller to hold where it is (best effort: the latch holds
        even if the write fails)."""
        with self._lock:
            self._armed = False
            self._needs_rearm = True
            self._stopped = True
            self._c["protective_stops"] += 1
        try:
            self._write_hold()
        except Exception as exc:  # noqa: BLE001 - the latch is what matters; report the write
            log.warning("%s: hold command on protective stop failed: %s", self.name, exc)

    def clear_stop(self) -> None:
        with self._lock:
            self._stopped = False
            self._armed = False
            self._needs_rearm = True

    def send_targets(self, positions, t_target: float | None = None) -> np.ndarray:
        """Write one target (runtime joint order, clamped to lower/upper if given) to the controller,
        to be reached at monotonic t_target (None / past: min_time_from_start_s from now).
        Returns what was written. Nothing is written on any error."""
        q = np.asarray(positions, dtype=np.float64)
        if q.shape != (self.n,):
            raise CommandError(f"{self.name}: targets must have shape ({self.n},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            bad = [self.joint_names[i] for i in np.nonzero(~np.isfinite(q))[0]]
            raise CommandError(f"{self.name}: refusing non-finite targets for joints {bad}; nothing sent")
        if self.lower is not None:
            q = np.clip(q, self.lower, self.upper)
        now = self.clock.now()
        with self._lock:
            cause = self._evaluate(now)
            if cause or not self._armed:
                self._c["commands_refused"] += 1
            if cause:
                err = StaleDataError if "stale" in cause or "no joint state" in cause else DeviceNotConnectedError
                raise err(f"{self.name}: holding, nothing sent: {cause}")
            if not self._armed:
                why = "protective stop latched" if self._stopped else (
                    "re-arm required after " + (self.last_trip_cause or "a stop") if self._needs_rearm else "call arm() first")
                raise NotArmedError(f"{self.name}: not armed ({why}); nothing sent")
            tfs = self.min_time_from_start_s if t_target is None else max(self.min_time_from_start_s, t_target - now)
            self._writer.write(self._command(q, tfs))
            self._c["commands_sent"] += 1
        return q.copy()

    def _command(self, q: np.ndarray, time_from_start_s: float):
        T = self._types
        if self.command_type == "forward_position":
            return T.Float64MultiArray_(data=[float(x) for x in q])
        point = T.JointTrajectoryPoint_(positions=[float(x) for x in q],
                                        time_from_start=T.duration_from_seconds(time_from_start_s))
        # header.stamp zero: the controller starts the trajectory on receipt (no clock agreement needed)
        return T.JointTrajectory_(joint_names=list(self.controller_joints), points=[point])

    def _write_hold(self) -> None:
        T, writer = self._types, self._writer
        if writer is None or T is None:
            return
        if self.command_type == "joint_trajectory":
            writer.write(T.JointTrajectory_(joint_names=list(self.controller_joints), points=[]))
            return
        item = self.state.peek()
        if item is not None and self.clock.now() - item.t_capture <= self.state_max_age_s:
            writer.write(T.Float64MultiArray_(data=[float(x) for x in item.value.positions]))

    def health(self) -> LinkHealth:
        now = self.clock.now()
        cause = self._evaluate(now)
        item = self.state.peek()
        age = float("inf") if item is None else now - item.t_capture
        return LinkHealth(not cause, self._armed, self._needs_rearm, age, cause, self.counters())

    def counters(self) -> dict:
        with self._lock:
            c = dict(self._c)
            c.update(subscribers=self._subscribers, cause=self._cause, last_trip_cause=self.last_trip_cause,
                     names_matched=self._names_matched, command_topic=self.command_topic,
                     state_topic=self.state_topic, domain_id=self.domain_id)
        return c
