"""`dexgrasp bridge`: talk to the hand/arm microcontroller (or its emulator) over the serial link."""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Probe or exercise the firmware bridge (serial protocol to the hand/arm microcontroller).

  dexgrasp bridge probe --port /dev/ttyACM0
      handshake, print one JSON line: versions, joints, session id, round-trip time
  dexgrasp bridge stream --port /dev/ttyACM0 --duration 10 --rate 500
      arm, stream small in-limit targets around the current pose, disarm; the last line printed
      is one JSON object: sent, states, crc_errors, resyncs, timeouts, reconnects, rtt_ms{p50,p99,max}
  dexgrasp bridge stream --emulator --duration 5 --rate 1000
      the same against dexgrasp-fw-emulator (built with cmake on first use), no hardware needed
"""


from runtime.cli.argtypes import number  # noqa: E402

# Bounds of `bridge stream` (shown in --help): the firmware link runs at most ~1 kHz, a bench
# check needs no more than an hour, and 0.2 rad keeps the test motion small near the limits.
MAX_RATE_HZ = 2000.0
MAX_DURATION_S = 3600.0
MAX_AMPLITUDE_RAD = 0.2


def register(subparsers) -> None:
    p = subparsers.add_parser("bridge", help="probe / stream the serial firmware bridge", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bridge_command", metavar="ACTION", required=True)

    def common(sp):
        sp.add_argument("--port", help="serial port (e.g. /dev/ttyACM0); omit with --emulator")
        sp.add_argument("--emulator", action="store_true", help="start dexgrasp-fw-emulator and use its pty")
        sp.add_argument("--limits", help="joint limits JSON (names, lower, upper, velocity[, acceleration])")
        sp.add_argument("--timeout-ms", type=float, default=200.0, help="link-loss timeout (default 200)")

    probe = sub.add_parser("probe", help="handshake and print one JSON line",
                           description="Handshake and print versions, joints, session id and RTT as one JSON "
                                       "line.\nExample: dexgrasp bridge probe --port /dev/ttyACM0")
    common(probe)
    probe.add_argument("--pings", type=int, default=20, help="heartbeat round trips to time (default 20)")
    probe.set_defaults(func=_probe)

    stream = sub.add_parser("stream", help="stream safe targets and print link statistics",
                            description="Arm, stream small sinusoidal targets (inside the limits) around the "
                                        "current pose, disarm.\nExample: dexgrasp bridge stream --emulator "
                                        "--duration 10 --rate 500")
    common(stream)
    stream.add_argument("--duration", type=number(float, 0, MAX_DURATION_S, lo_open=True), default=5.0,
                        help=f"wall-clock seconds, 0 < s <= {MAX_DURATION_S:g} (default 5)")
    stream.add_argument("--rate", type=number(float, 0, MAX_RATE_HZ, lo_open=True), default=500.0,
                        help=f"command rate in Hz, 0 < hz <= {MAX_RATE_HZ:g} (default 500)")
    stream.add_argument("--amplitude", type=number(float, 0, MAX_AMPLITUDE_RAD), default=0.05,
                        help=f"sine amplitude on the arm joints, 0 <= rad <= {MAX_AMPLITUDE_RAD:g} (default 0.05)")
    stream.set_defaults(func=_stream)


def _open(args):
    """(emulator or None, port, limits)."""
    from firmware_bridge.emulator import EmulatorProcess
    from firmware_bridge.joints import JointLimits
    from runtime.errors import ConfigError

    limits = JointLimits.load_json(args.limits) if args.limits else JointLimits.default()
    if args.emulator:
        emu = EmulatorProcess().start(limits=limits)
        return emu, emu.port, limits
    if not args.port:
        raise ConfigError("bridge: give --port PORT, or --emulator to start the firmware emulator")
    return None, args.port, limits


def _probe(args) -> int:
    import numpy as np

    from firmware_bridge.host import BridgeHost

    emu, port, limits = _open(args)
    try:
        with BridgeHost(port, limits=limits, timeout_ms=args.timeout_ms) as bridge:
            info = bridge.device_info
            rtts = np.array(bridge.ping(max(1, args.pings))) * 1e3
            state = bridge.state.wait_newer(0, timeout_s=0.5)
            fw = info.firmware_version
            print(json.dumps({
                "port": port,
                "protocol_version": info.protocol_version,
                "firmware_version": f"{fw >> 16}.{(fw >> 8) & 0xFF}.{fw & 0xFF}",
                "session_id": f"0x{info.session_id:08x}",
                "num_joints": info.num_joints,
                "joints": list(limits.names),
                "schema_hash": f"0x{info.schema_hash:08x}",
                "hold_timeout_ms": info.hold_timeout_us / 1e3,
                "safe_off_timeout_ms": info.safe_off_timeout_us / 1e3,
                "mode": state.value.mode.name if state else None,
                "rtt_ms": {"p50": float(np.percentile(rtts, 50)), "p99": float(np.percentile(rtts, 99)),
                           "max": float(rtts.max()), "count": int(rtts.size)},
            }))
    finally:
        if emu is not None:
            emu.stop()
    return 0


def stream_targets(bridge, duration_s: float, rate_hz: float, amplitude: float, progress: bool = True,
                   joint_space=None) -> dict:
    """Arm, stream sinusoidal in-limit targets around the current pose at `rate_hz`, disarm.
    Returns the bridge counters plus what this loop saw. Shared with benchmarks/bridge.py.

    Only the arm joints move (the hand holds): which ones they are is `joint_space`'s arm slice
    (a runtime.joint_space.JointSpace; default: the joint space of a config that names no joints,
    the layout the serial firmware's 13-joint wire format carries)."""
    import math

    import numpy as np
    from tqdm import tqdm

    from firmware_bridge.errors import NotArmedError
    from runtime.errors import ConfigError
    from runtime.execution.safety import JointLimits as SafetyLimits
    from runtime.execution.safety import SafetyFilter
    from runtime.joint_space import JointSpace
    from runtime.rate import Rate

    space = joint_space if joint_space is not None else JointSpace.from_config({})
    bridge.arm()
    q0 = np.asarray(bridge.latest_state(max_age_s=0.5).positions, dtype=np.float64).copy()
    if q0.shape != (space.n,):
        bridge.disarm()
        raise ConfigError(f"bridge stream: the link reports {q0.size} joints, the joint space has {space.n} "
                          f"({space.n_arm} arm + {space.n_hand} hand)")
    mask = space.per_joint(1.0, 0.0)  # the arm moves, the hand holds
    rate = Rate(rate_hz, bridge.clock, name="bridge-stream")
    # The same host-side limiter the control loop uses, on the host's envelope (never wider than the
    # firmware's: the handshake refuses that): velocity and acceleration hold whatever is asked.
    envelope = bridge.limits
    safety = SafetyFilter(SafetyLimits(lower=np.asarray(envelope.lower, dtype=np.float64),
                                       upper=np.asarray(envelope.upper, dtype=np.float64),
                                       max_velocity=np.asarray(envelope.max_velocity, dtype=np.float64),
                                       max_acceleration=np.asarray(envelope.max_acceleration, dtype=np.float64)),
                          dt_s=1.0 / rate_hz)
    safety.reset(np.asarray(q0, dtype=np.float64))
    refused = 0
    # duration * rate commands, but never for much longer than asked: a rate the link cannot sustain
    # must not stretch a 0.5 s stream into minutes, while a loaded machine that falls a few cycles
    # behind still sends them all (a cut at exactly `duration` would drop the last one).
    n_cycles = max(1, int(round(duration_s * rate_hz)))
    give_up_after_s = duration_s * 1.1 + 0.5
    t_start = bridge.clock.now()
    bar = tqdm(total=n_cycles, unit="cmd", desc="streaming", file=sys.stderr, disable=not progress,
               mininterval=0.5)
    try:
        for i in range(n_cycles):
            if i and bridge.clock.now() - t_start >= give_up_after_s:
                break
            tick = rate.sleep()
            phase = 2 * math.pi * 0.5 * (tick.deadline - rate.started_at)
            q, _ = safety.apply(bridge.limits.clip(q0 + mask * amplitude * math.sin(phase)))
            try:
                bridge.send_targets(q)
            except NotArmedError:
                refused += 1
            bar.update(1)
    finally:
        bar.close()
        if bridge.armed:
            bridge.disarm()
    c = bridge.counters()
    out = {
        "sent": c["commands_sent"], "states": c["states"], "crc_errors": c["crc_errors"], "resyncs": c["resyncs"],
        "timeouts": c["timeouts"], "reconnects": c["reconnects"], "rtt_ms": c["rtt_ms"],
        "confirmed": c["commands_confirmed"], "lost_rx_frames": c["lost_rx_frames"], "refused": refused,
        "device_faults": c["device_fault_codes"], "rate": rate.report(),
        "limited": {"velocity": safety.counters.limited_velocity, "acceleration": safety.counters.limited_acceleration},
    }
    return out


def _stream(args) -> int:
    from firmware_bridge.host import BridgeHost
    from runtime.errors import ConfigError

    if not (args.rate > 0 and args.duration > 0):
        raise ConfigError(f"bridge stream: --rate and --duration must be positive (got {args.rate}, {args.duration})")
    emu, port, limits = _open(args)
    try:
        with BridgeHost(port, limits=limits, timeout_ms=args.timeout_ms) as bridge:
            result = stream_targets(bridge, args.duration, args.rate, args.amplitude,
                                    progress=sys.stderr.isatty())
            bridge.state.wait_newer(0, timeout_s=0.1)
            result["states"] = bridge.counters()["states"]
            result["port"] = port
    finally:
        if emu is not None:
            emu.stop()
    print(json.dumps(result))
    return 0
