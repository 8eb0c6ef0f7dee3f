"""The declared robot-link interface: what the control loop may call on whatever moves the robot.

`RobotLink` is the contract (like lerobot's `Robot` or a ros2_control hardware interface) that the
firmware bridge (firmware_bridge.host.BridgeHost, emulator included), the fake
(runtime.execution.fakes.FakeBridge), the MuJoCo link (runtime.sim.bridge.MujocoBridge), the ROS 2
arm adapter (runtime.robot.ros2.Ros2ArmLink), the arm + hand composite
(runtime.robot.composite.CompositeLink) and the parent side of the separate control process
(runtime.execution.loop_process.ControlProcessLink) all satisfy. It is exactly what
runtime.execution.loop.ControlLoop uses today, so any of them can be handed to the loop unchanged;
`tests/runtime/robot/test_link_protocol.py` checks each implementation against it (isinstance on
the runtime-checkable Protocol plus call-shape checks of every method).

Every link's `latest_state()` returns the one `JointState` below, named by the runtime's joint
names, so consumers (the loop, telemetry, the control-process boundary) never convert.

Safety semantics every link keeps: motion needs an explicit `arm()`; a link loss, a stale state
stream, a protective stop or `clear_stop()` disarms and latches `needs_rearm`, and nothing
re-arms by itself. Errors are the project's own (runtime.errors / firmware_bridge.errors, all
DexGraspError): StaleDataError, DeviceNotConnectedError, NotArmedError, CommandError, ConfigError.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# bridge.kind values that drive a real robot: never auto-rearm, need a named home pose, DDS
# commands need security. Config validation, loop.effective_auto_rearm and the app's DDS
# command-trust check all ask is_real_hardware().
REAL_HARDWARE_KINDS = frozenset({"serial", "ros2"})


def is_real_hardware(kind: str) -> bool:
    return kind in REAL_HARDWARE_KINDS


@dataclass(frozen=True)
class JointState:
    """One timestamped measurement of a set of named joints, in the runtime's units (arm rad, hand 0..1).

    stamp: when the host received it, on the runtime's monotonic clock (runtime.clock.Clock), so its
           age is `clock.now() - stamp` whatever the sender's clock says.
    velocities: NaN where the source publishes none (ROS 2 JointState may leave velocity empty).
    source: which link produced it ("ros2:rt/joint_states", "serial /dev/ttyACM0", "arm+hand").
    extra: a few small, picklable details of the source (firmware mode, sim step counters); the
           source's full report stays with the link (BridgeHost.state holds the firmware's).
    efforts: measured efforts where the source reports them (the firmware does), else None;
             telemetry publishes them.
    """

    names: tuple[str, ...]
    positions: np.ndarray
    velocities: np.ndarray
    stamp: float
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    efforts: np.ndarray | None = None

    @property
    def t_host_receive(self) -> float:
        """The same instant under the firmware State's name (consumers written against it keep working)."""
        return self.stamp

    def age_s(self, now: float) -> float:
        return now - self.stamp


@dataclass(frozen=True)
class LinkHealth:
    """How a link is doing, in one place: `ok` is what `link_up` says; `cause` says why not."""

    ok: bool
    armed: bool
    needs_rearm: bool
    state_age_s: float  # inf when no state was ever received
    cause: str = ""  # empty when ok
    counters: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class RobotLink(Protocol):
    """What the control loop calls. Implementations document their own timeouts; the bounds below hold for all.

    Blocking:
      connect()          blocks for the handshake (open, exchange, first state): seconds at most,
                         raises DeviceNotConnectedError / ProtocolMismatchError / ConfigError.
      latest_state()     never blocks (reads the newest received state).
      send_targets()     never waits for an answer; at most a bounded write (BridgeHost: its
                         write timeout, 100 ms by default; DDS: a non-blocking write).
      arm / disarm / protective_stop / clear_stop
                         wait for the device's answer where it has one (BridgeHost: request
                         timeout x retries); the ROS 2 adapter answers locally (no controller
                         round trip) and never blocks; the control-process link waits for the
                         child to report the effect (about a control cycle, at most 1 s).
      close()            bounded (joins its threads with a timeout), best-effort disarm first.
    """

    @property
    def link_up(self) -> bool:
        """The link is connected and its state stream is fresh (not latched off by a watchdog)."""

    @property
    def armed(self) -> bool:
        """Motion targets are currently forwarded to the robot."""

    @property
    def needs_rearm(self) -> bool:
        """A link loss, a stale stream, a stop or a reset disarmed it: only an explicit arm() moves again."""

    def connect(self) -> Any:
        """Open and handshake (see class docstring for how long it may block)."""

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        """The newest state, a JointState named by the runtime's joint names (`t_host_receive` is
        its `stamp`). Raises StaleDataError if there is none or it is older than max_age_s. Never blocks."""

    def send_targets(self, positions: np.ndarray, t_target: float | None = None) -> np.ndarray:
        """Send one joint-position target to be reached at monotonic time t_target (None: as soon
        as the limits allow). Returns exactly what was sent. Raises (nothing sent): CommandError on
        bad values, NotArmedError, StaleDataError, DeviceNotConnectedError."""

    def arm(self) -> None:
        """The operator's explicit enable; clears needs_rearm. Refused while the link is down/stale."""

    def disarm(self) -> None:
        """Stop forwarding motion; the robot decelerates within its limits and holds."""

    def protective_stop(self) -> None:
        """Latch a stop (the robot holds); only clear_stop() and then arm() move again."""

    def clear_stop(self) -> None:
        """Lift the protective-stop latch. Never re-arms."""

    def counters(self) -> dict:
        """Link statistics and health details (JSON-serialisable)."""

    def close(self) -> None:
        """Disarm (best effort) and release the link. Safe to call twice."""


# The positional arguments the loop (and the app) pass to each method, used by the call-shape check.
CALL_SHAPES: dict[str, tuple] = {
    "connect": (),
    "latest_state": (0.05,),
    "send_targets": (np.zeros(1), 0.0),
    "arm": (),
    "disarm": (),
    "protective_stop": (),
    "clear_stop": (),
    "counters": (),
    "close": (),
}


def check_link(obj: Any) -> list[str]:
    """What keeps `obj` from being a RobotLink: missing members, or methods that cannot be called the
    way the loop calls them (e.g. send_targets without a t_target parameter). Empty when it is one."""
    problems = []
    if not isinstance(obj, RobotLink):
        missing = [m for m in (*CALL_SHAPES, "link_up", "armed", "needs_rearm") if not hasattr(obj, m)]
        problems.append(f"{type(obj).__name__} is not a RobotLink (missing {missing})")
        return problems
    for name, args in CALL_SHAPES.items():
        try:
            inspect.signature(getattr(obj, name)).bind(*args)
        except TypeError as exc:
            problems.append(f"{type(obj).__name__}.{name}{args!r}: {exc}")
    for name, param in (("latest_state", "max_age_s"), ("send_targets", "t_target")):
        if param not in inspect.signature(getattr(obj, name)).parameters:
            problems.append(f"{type(obj).__name__}.{name} has no {param} parameter (the loop passes it by name)")
    return problems


def link_health(link: Any, now: float | None = None) -> LinkHealth:
    """A LinkHealth for any RobotLink: its own health() if it has one, else derived from
    link_up / armed / needs_rearm / counters() and the newest state's age."""
    own = getattr(link, "health", None)
    if callable(own):
        return own()
    clock = getattr(link, "clock", None)
    t = now if now is not None else (clock.now() if clock is not None else None)
    age = float("inf")
    try:
        stamp = link.latest_state(None).stamp
        if t is not None:
            age = t - stamp
    except Exception:  # noqa: BLE001 - no state yet is a health fact, not an error
        pass
    ok = bool(link.link_up)
    return LinkHealth(ok, bool(link.armed), bool(getattr(link, "needs_rearm", False)), age,
                      "" if ok else "link down", dict(link.counters()))
