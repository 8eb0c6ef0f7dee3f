"""Trust boundaries of the bridge (issue 11): the port is exclusive, a second writer is detected and
stopped, the firmware's own limits bound the host's envelope, and only an explicit arm() re-arms.

Why: a plain open() of the port read the session id, injected a target with a higher seq and the
firmware applied it; the host's config could command more than the firmware enforces; the emulator
took its "independent" limits from the same config."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.errors import EnvelopeError, NotArmedError, ProtocolMismatchError, SecondWriterError
from firmware_bridge.framer import Framer
from firmware_bridge.host import BridgeHost
from firmware_bridge.joints import DEFAULT_JOINT_NAMES, JointLimits
from firmware_bridge.link import tty_is_exclusive
from firmware_bridge.testing import PtyProxy, read_applied

NOBODY = 65534


def wait_until(pred, timeout_s: float, what: str) -> None:
    ev = threading.Event()
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        ev.wait(0.005)


def plain_open_errno(path: str) -> int:
    """errno of a plain open() of `path` by an unprivileged process (0: it opened).

    As root the open runs as `nobody` on a world-writable copy of the permissions, because
    CAP_SYS_ADMIN bypasses TIOCEXCL (checked on this kernel: root's open succeeds)."""
    if os.geteuid() != 0:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
            return 0
        except OSError as exc:
            return exc.errno
    os.chmod(path, 0o666)
    proc = subprocess.run(["/bin/sh", "-c", f"exec 3<>{path}"], user=NOBODY, cwd="/", capture_output=True,
                          text=True, timeout=10)
    if proc.returncode == 0:
        return 0
    return errno.EBUSY if "busy" in proc.stderr.lower() else errno.EIO


# ---- exclusive tty ---------------------------------------------------------------------------


def test_port_is_tiocexcl_while_held_and_released_on_close(start_emulator):
    emu = start_emulator()
    assert plain_open_errno(emu.port) == 0  # nothing holds it yet
    bridge = BridgeHost(emu.port)
    bridge.connect()
    try:
        fd = os.open(emu.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)  # root may; reads the flag
        try:
            assert tty_is_exclusive(fd)
        finally:
            os.close(fd)
        assert plain_open_errno(emu.port) == errno.EBUSY
    finally:
        bridge.close()
    assert plain_open_errno(emu.port) == 0  # TIOCNXCL on close: a reconnecting host can open it


# ---- second writer ---------------------------------------------------------------------------


@pytest.fixture
def proxied(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    proxy = PtyProxy(emu.port).start()
    bridge = BridgeHost(proxy.port)
    bridge.connect()
    yield emu, proxy, bridge, log
    bridge.close()
    proxy.stop()


def _stream(bridge: BridgeHost, n: int) -> np.ndarray:
    q = bridge.latest_state(1.0).positions
    for _ in range(n):
        bridge.send_targets(q)
        time.sleep(0.004)
    return q


def _assert_stopped_and_latched(bridge: BridgeHost, q) -> None:
    wait_until(lambda: bridge.counters()["intrusion_stops"] >= 1, 3.0, "the protective stop")
    wait_until(lambda: bridge.state.latest().value.mode is P.Mode.PSTOP, 2.0, "firmware mode PSTOP")
    assert not bridge.armed and bridge.needs_rearm
    assert bridge.counters()["second_writer"] >= 1 and bridge.second_writer
    with pytest.raises(NotArmedError, match="second writer"):
        bridge.send_targets(q)
    with pytest.raises(SecondWriterError, match="clear_stop"):
        bridge.arm()
    bridge.clear_stop()  # the operator acknowledges: still not armed
    wait_until(lambda: bridge.state.latest().value.mode is P.Mode.DISARMED, 2.0, "DISARMED after clear")
    assert not bridge.armed and bridge.second_writer is None
    with pytest.raises(NotArmedError):
        bridge.send_targets(q)
    bridge.arm()
    bridge.send_targets(q)


def test_injected_target_from_a_second_writer_is_detected_and_stopped(proxied):
    emu, proxy, bridge, log = proxied
    bridge.arm()
    q = _stream(bridge, 5)
    # What the intruder did: read the session off the line, send a target with a higher seq.
    evil = q.copy()
    evil[0] += 0.2
    proxy.inject_to_device(b"\x00" + P.encode(P.targets(bridge.last_sent_seq + 1000, bridge.session_id,
                                                         int(time.monotonic() * 1e6) + 10**6, evil)))
    wait_until(lambda: bridge.second_writer is not None, 2.0, "second-writer detection")
    assert "applied seq" in bridge.second_writer or "ERR_REPLAY" in bridge.second_writer
    _assert_stopped_and_latched(bridge, q)


def test_injected_err_replay_fault_means_protective_stop(proxied):
    emu, proxy, bridge, log = proxied
    bridge.arm()
    q = _stream(bridge, 3)
    fault = P.Fault(int(P.ErrorCode.ERR_REPLAY), int(P.MsgType.TARGETS), bridge.last_sent_seq)
    proxy.inject_to_host(b"\x00" + P.encode(P.Message(P.MsgType.FAULT, 0x7FFF0000, bridge.session_id, fault)))
    wait_until(lambda: bridge.second_writer is not None, 2.0, "second-writer detection")
    assert "ERR_REPLAY" in bridge.second_writer
    _assert_stopped_and_latched(bridge, q)


def test_firmware_reset_and_a_later_host_are_not_second_writers(start_emulator):
    """Explained cases: a new firmware session, and a host that connects after another one
    applied higher seqs (the firmware still reports that host's last applied seq)."""
    emu = start_emulator()
    with BridgeHost(emu.port) as first:
        first.arm()
        for _ in range(300):  # leave a high last_applied_seq behind
            first.send_targets(first.latest_state(1.0).positions)
    with BridgeHost(emu.port) as bridge:
        bridge.arm()
        _stream(bridge, 20)
        emu.reset()
        wait_until(lambda: bridge.counters()["session_changes"] >= 1 and bridge.wait_ready(0.0), 5.0,
                   "re-handshake after reset")
        bridge.arm()
        _stream(bridge, 20)
        assert bridge.second_writer is None and bridge.counters()["second_writer"] == 0


def test_clear_stop_never_leaves_the_host_armed(start_emulator):
    """clear_stop() is not a re-arm, whatever the state: even called while armed, motion needs an
    explicit arm() afterwards (the old clear_stop left an armed host armed)."""
    emu = start_emulator()
    with BridgeHost(emu.port) as bridge:
        bridge.arm()
        q = _stream(bridge, 3)
        bridge.clear_stop()
        assert not bridge.armed and bridge.needs_rearm
        with pytest.raises(NotArmedError, match="re-arm required"):
            bridge.send_targets(q)
        bridge.protective_stop()
        bridge.clear_stop()
        wait_until(lambda: bridge.state.latest().value.mode is P.Mode.DISARMED, 2.0, "PSTOP -> DISARMED, not ARMED")
        with pytest.raises(NotArmedError):
            bridge.send_targets(q)
        bridge.arm()
        bridge.send_targets(q)


# ---- the firmware's limits bound the envelope -----------------------------------------------------


def _limits_file(tmp_path, **changes) -> tuple:
    d = JointLimits.default()
    arrays = {"lower": d.lower.copy(), "upper": d.upper.copy(), "velocity": d.max_velocity.copy(),
              "acceleration": d.max_acceleration.copy()}
    for key, (joint, value) in changes.items():
        arrays[key][joint] = value
    path = tmp_path / "fw_limits.json"
    path.write_text(json.dumps({"names": list(DEFAULT_JOINT_NAMES), **{k: v.tolist() for k, v in arrays.items()}}))
    return path


def test_emulator_reports_its_compiled_table_and_a_narrower_envelope_connects(start_emulator):
    emu = start_emulator()  # no --limits: the table compiled into the firmware
    d = JointLimits.default()
    host = JointLimits(d.names, d.lower * 0.9, d.upper * 0.9, d.max_velocity * 0.5, d.max_acceleration * 0.8)
    with BridgeHost(emu.port, limits=host) as bridge:
        fw = bridge.firmware_limits
        for a, b in ((fw.lower, d.lower), (fw.upper, d.upper), (fw.max_velocity, d.max_velocity),
                     (fw.max_acceleration, d.max_acceleration)):
            np.testing.assert_array_equal(a, np.float32(b))
        bridge.arm()


@pytest.mark.parametrize("change, message", [
    ({"velocity": (9, 1.0)}, "hand_joint_3 max_velocity 2 > firmware 1"),
    ({"acceleration": (0, 5.0)}, "arm_joint_1 max_acceleration 10 > firmware 5"),
    ({"upper": (6, 3.0)}, "arm_joint_7 upper 6.28 > firmware 3"),
    ({"lower": (12, 0.2)}, "hand_joint_6 lower 0 < firmware 0.2"),
])
def test_envelope_wider_than_the_firmware_is_refused(start_emulator, tmp_path, change, message):
    log = tmp_path / "applied.csv"
    emu = start_emulator(limits=_limits_file(tmp_path, **change), log_applied=log)
    bridge = BridgeHost(emu.port)  # default envelope: wider than this firmware build on one joint
    with pytest.raises(EnvelopeError, match=f"envelope wider than the firmware's.*{message}.*no motion enabled"):
        bridge.connect()
    with pytest.raises(NotArmedError):
        bridge.send_targets(np.zeros(13))
    bridge.close()
    emu.stop()
    assert read_applied(log) == []


def test_version_1_firmware_answer_names_the_version(tmp_path):
    """A version-1 firmware answers with the 32-byte HELLO_ACK (no limits): the host must say
    which versions disagree, not time out on a frame it cannot decode."""
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    port = os.ttyname(slave)
    stop = threading.Event()

    def device() -> None:
        framer = Framer()
        os.set_blocking(master, False)
        while not stop.is_set():
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                time.sleep(0.002)
                continue
            for ev in framer.feed(data):
                if isinstance(ev, P.Message) and ev.type is P.MsgType.HELLO:
                    ack = P.HelloAck(1, 13, ev.body.schema_hash, 0x1234, ev.body.host_nonce, 0x00010000,
                                     int(P.ErrorCode.ERR_VERSION), 8, 20000, 150000)
                    os.write(master, P.encode(P.Message(P.MsgType.HELLO_ACK, 1, 0x1234, ack)))

    t = threading.Thread(target=device, daemon=True)
    t.start()
    try:
        with pytest.raises(ProtocolMismatchError, match=f"host speaks version {P.PROTOCOL_VERSION}, "
                                                        "firmware speaks version 1"):
            BridgeHost(port).connect(timeout_s=2.0)
    finally:
        stop.set()
        t.join(1.0)
        os.close(master)
        os.close(slave)


# ---- the runtime's bridge factory: the emulator's limits are its own -----------------------------


def _make_bridge(safety: dict):
    from runtime.clock import Clock
    from runtime.config.components import make_bridge
    from runtime.config.loading import config_from_dict

    cfg = config_from_dict({"bridge": {"kind": "emulator"}, "safety": safety}, "test.yaml")
    return make_bridge(cfg, Clock())


def test_runtime_emulator_uses_its_compiled_table_not_the_config(fw_build, monkeypatch):
    """The old factory started the emulator with the config's limits x 1.25, so the "independent"
    firmware check could never disagree with the config."""
    monkeypatch.setenv("DEXGRASP_FW_EMULATOR", str(fw_build / "dexgrasp-fw-emulator"))
    handle = _make_bridge({"max_velocity_arm_rad_s": 1.0})
    try:
        fw = handle.bridge.firmware_limits
        np.testing.assert_array_equal(fw.max_velocity, np.float32(JointLimits.default().max_velocity))
        assert handle.bridge.limits.max_velocity[0] == 1.0  # the envelope is the SafetyConfig itself
    finally:
        handle.close()


def test_runtime_config_faster_than_the_firmware_is_refused(fw_build, monkeypatch):
    monkeypatch.setenv("DEXGRASP_FW_EMULATOR", str(fw_build / "dexgrasp-fw-emulator"))
    with pytest.raises(EnvelopeError, match="arm_joint_1 max_velocity 2 > firmware 1.5.*no motion enabled"):
        _make_bridge({"max_velocity_arm_rad_s": 2.0})
