"""The runtime's health as diagnostic_msgs/DiagnosticArray entries (rt/diagnostics).

`build_statuses` is a pure function of what the telemetry node has observed (a `Seen` snapshot),
so each level rule is tested without DDS. One entry per part, named "dexgrasp: <part>":
loop (timing, hold reason, protective stop), link (robot state stream), cameras (frame age),
policy, planner (last reply, current box). Levels: OK 0, WARN 1, ERROR 2, STALE 3 (no data for
`stale_after_s`, or never).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.telemetry.types import DIAG_ERROR, DIAG_OK, DIAG_STALE, DIAG_WARN

LEVEL_NAMES = {DIAG_OK: "OK", DIAG_WARN: "WARN", DIAG_ERROR: "ERROR", DIAG_STALE: "STALE"}
LINK_FAULTS = ("link_down", "robot_state_stale", "arm_failed", "measured_state_nonfinite")
POLICY_WARN = ("waiting_for_chunk", "nonfinite_target", "perception_stale")


@dataclass
class Seen:
    """What the node knows at one instant (ages in seconds on the monotonic clock; None = never)."""

    now: float
    stale_after_s: float
    runtime: dict = field(default_factory=dict)  # the latest on_status document
    joint_state_age_s: float | None = None
    joint_state_hz: float | None = None
    frame_age_s: float | None = None
    head_size: tuple[int, int] | None = None
    planner: dict = field(default_factory=dict)  # {"ok", "error", "task", "age_s"} of the last reply
    box: list[float] | None = None
    box_source: str | None = None


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _entry(level: int, part: str, message: str, **values) -> tuple[int, str, str, dict]:
    return level, f"dexgrasp: {part}", message, {k: _fmt(v) for k, v in values.items() if v is not None}


def build_statuses(s: Seen) -> list[tuple[int, str, str, dict]]:
    """[(level, name, message, {key: value})] for the loop, link, cameras, policy and planner."""
    rt = s.runtime or {}
    hold = rt.get("hold_reason")
    out = []

    # loop: timing figures when the runtime reports them, and its safety state
    # the loop's own figures when its status carries them; always the joint-state rate seen here
    timing = {k: rt.get(k) for k in ("rate_hz_achieved", "missed_cycles", "lateness_p99_us")}
    timing["joint_state_hz_seen"] = s.joint_state_hz
    if not rt:
        out.append(_entry(DIAG_STALE, "loop", "no status from the control loop yet"))
    elif rt.get("protective_stop"):
        out.append(_entry(DIAG_ERROR, "loop", "protective stop latched (send clear, then arm)", hold_reason=hold, **timing))
    elif isinstance(rt.get("missed_cycles"), (int, float)) and rt["missed_cycles"] > 0:
        out.append(_entry(DIAG_WARN, "loop", f"{rt['missed_cycles']} missed cycle(s)", hold_reason=hold, **timing))
    else:
        out.append(_entry(DIAG_OK, "loop", f"holding: {hold}" if hold else "running", hold_reason=hold, **timing))

    # link: the robot state stream as seen here, and the loop's own link verdict
    age = s.joint_state_age_s
    if hold in LINK_FAULTS:
        out.append(_entry(DIAG_ERROR, "link", f"robot link fault: {hold}", state_age_s=age, state_hz=s.joint_state_hz))
    elif age is None or age > s.stale_after_s:
        msg = "no joint state yet" if age is None else f"no joint state for {age:.1f} s"
        out.append(_entry(DIAG_STALE, "link", msg, state_age_s=age))
    else:
        out.append(_entry(DIAG_OK, "link", "joint states flowing", state_age_s=age, state_hz=s.joint_state_hz))

    fa = s.frame_age_s
    size = f"{s.head_size[0]}x{s.head_size[1]}" if s.head_size else None
    if fa is None or fa > s.stale_after_s:
        out.append(_entry(DIAG_STALE, "cameras", "no frames yet" if fa is None else f"no frames for {fa:.1f} s",
                          frame_age_s=fa, head_size=size))
    elif hold == "perception_stale":
        out.append(_entry(DIAG_WARN, "cameras", "the loop reports stale perception", frame_age_s=fa, head_size=size))
    else:
        out.append(_entry(DIAG_OK, "cameras", "frames flowing", frame_age_s=fa, head_size=size))

    enabled = rt.get("policy_enabled")
    if not rt:
        out.append(_entry(DIAG_STALE, "policy", "no status yet"))
    elif hold in POLICY_WARN and enabled:
        out.append(_entry(DIAG_WARN, "policy", f"enabled but holding: {hold}", enabled=enabled))
    else:
        out.append(_entry(DIAG_OK, "policy", "driving the arm" if enabled else "disabled", enabled=enabled))

    p = s.planner or {}
    box = None if s.box is None else "[" + ", ".join(f"{v:.1f}" for v in s.box) + "]"
    if not p:
        out.append(_entry(DIAG_OK, "planner", "no planner reply yet", box=box, box_source=s.box_source))
    elif p.get("ok") is False:
        out.append(_entry(DIAG_WARN, "planner", f"last {p.get('task')} reply failed: {p.get('error')}",
                          box=box, box_source=s.box_source, reply_age_s=p.get("age_s")))
    else:
        out.append(_entry(DIAG_OK, "planner", f"last {p.get('task')} reply ok", box=box,
                          box_source=s.box_source, reply_age_s=p.get("age_s")))
    return out
