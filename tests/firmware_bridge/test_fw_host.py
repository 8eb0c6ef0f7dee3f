"""BridgeHost against the real emulator over a pseudo-terminal: handshake, arm, what is sent is
what is applied, refusals before the wire, exclusive open, version and schema mismatch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.errors import (
    CommandError,
    DeviceRejectedError,
    NotArmedError,
    ProtocolMismatchError,
)
from firmware_bridge.host import BridgeHost
from firmware_bridge.joints import DEFAULT_JOINT_NAMES, JointLimits
from firmware_bridge.testing import read_applied
from runtime.errors import DeviceNotConnectedError
from runtime.rate import Rate


def test_handshake_reports_device_and_state(start_emulator):
    emu = start_emulator()
    with BridgeHost(emu.port) as bridge:
        info = bridge.device_info
        assert info.protocol_version == P.PROTOCOL_VERSION and info.num_joints == 13
        assert info.schema_hash == P.schema_hash(DEFAULT_JOINT_NAMES)
        assert bridge.session_id == info.session_id != 0
        st = bridge.state.wait_newer(0, timeout_s=2.0).value
        assert st.mode is P.Mode.DISARMED and st.positions.shape == (13,)
        assert bridge.link_up
        assert len(bridge.ping(3)) == 3


def test_round_trip_500hz_no_lost_frames(start_emulator, tmp_path):
    """A short version of the benchmark's round trip: every command sent is applied, in order,
    with exactly the values send_targets returned; every state frame arrives (no seq gaps)."""
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with BridgeHost(emu.port, write_timeout_ms=2000) as bridge:  # a loaded CI machine may stall the emulator
        bridge.arm()
        q0 = bridge.latest_state(1.0).positions
        rate = Rate(500.0, name="test-500hz")
        sent = {}
        for k in range(500):
            rate.sleep()
            q = q0.copy()
            q[:7] += 0.02 * np.sin(k / 50)
            q[12] = 5.0  # outside the hand limit: clamped on the host, returned as sent
            out = bridge.send_targets(q)
            assert out[12] == 1.0
            sent[bridge.last_sent_seq] = out
        bridge.disarm()
        c = bridge.counters()
    emu.stop()
    applied = read_applied(log)
    assert [r[0] for r in applied] == sorted(sent)  # all applied, none twice, in order
    for seq, _, values in applied:
        np.testing.assert_array_equal(values.astype(np.float32), sent[seq].astype(np.float32))
    assert c["lost_rx_frames"] == 0 and c["crc_errors"] == 0 and c["resyncs"] == 0
    assert c["commands_confirmed"] == 500 and c["rtt_samples"] == 500


def test_nonfinite_and_bad_shape_refused_before_the_wire(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with BridgeHost(emu.port) as bridge:
        bridge.arm()
        q = bridge.latest_state(1.0).positions.copy()
        tx = bridge.counters()["commands_sent"]
        for bad in (np.nan, np.inf, -np.inf):
            q2 = q.copy()
            q2[4] = bad
            with pytest.raises(CommandError, match="arm_joint_5"):
                bridge.send_targets(q2)
        with pytest.raises(CommandError, match="shape"):
            bridge.send_targets(q[:12])
        assert bridge.counters()["commands_sent"] == tx  # nothing reached the wire
    emu.stop()
    assert read_applied(log) == []


def test_no_motion_before_arm_and_after_disarm(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with BridgeHost(emu.port) as bridge:
        q = bridge.state.wait_newer(0, 2.0).value.positions
        with pytest.raises(NotArmedError, match="arm"):
            bridge.send_targets(q)
        bridge.arm()
        bridge.send_targets(q)
        bridge.disarm()
        with pytest.raises(NotArmedError):
            bridge.send_targets(q)
    emu.stop()
    assert len(read_applied(log)) == 1


def test_trajectory_is_applied_point_by_point(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with BridgeHost(emu.port) as bridge:
        bridge.arm()
        q0 = bridge.latest_state(1.0).positions
        now = bridge.clock.now()
        pts = np.stack([q0 + 0.01 * i for i in range(1, 5)])
        pts[:, 7:] = 0.5
        sent = bridge.send_trajectory(now + 0.01 * np.arange(1, 5), pts)
        st = bridge.state.wait_newer(bridge.state.peek().seq, 1.0)
        assert st is not None
    emu.stop()
    rows = read_applied(log)
    assert len(rows) == 4 and len({r[0] for r in rows}) == 1
    np.testing.assert_allclose(np.stack([r[2] for r in rows]), sent, atol=1e-6)


def test_protective_stop_latches_until_clear_and_arm(start_emulator):
    emu = start_emulator()
    with BridgeHost(emu.port) as bridge:
        bridge.arm()
        bridge.protective_stop()
        assert bridge.needs_rearm
        with pytest.raises(DeviceRejectedError, match="ERR_PSTOP"):
            bridge.arm()
        bridge.clear_stop()
        bridge.arm()
        q = bridge.latest_state(1.0).positions
        bridge.send_targets(q)
        st = bridge.state.wait_newer(bridge.state.peek().seq, 1.0).value
        assert st.mode is P.Mode.ARMED


def test_version_mismatch_names_both_versions_and_enables_nothing(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    bridge = BridgeHost(emu.port, expected_version=P.PROTOCOL_VERSION + 1)
    with pytest.raises(ProtocolMismatchError, match=f"host speaks version {P.PROTOCOL_VERSION + 1}, "
                                                    f"firmware speaks version {P.PROTOCOL_VERSION}"):
        bridge.connect()
    with pytest.raises(NotArmedError):
        bridge.send_targets(np.zeros(13))
    bridge.close()


def test_schema_mismatch_names_both_hashes(start_emulator):
    emu = start_emulator()
    names = list(DEFAULT_JOINT_NAMES)
    names[8] = "thumb_rotation"
    with pytest.raises(ProtocolMismatchError, match="joint schema mismatch.*thumb_rotation"):
        BridgeHost(emu.port, joint_names=names).connect()


def test_emulator_limits_file_sets_schema_and_clamps(start_emulator, tmp_path):
    names = [f"j{i}" for i in range(13)]
    lim = JointLimits(tuple(names), -np.full(13, 0.5), np.full(13, 0.5), np.full(13, 1.0), np.full(13, 5.0))
    path = tmp_path / "limits.json"
    path.write_text(json.dumps({"names": names, "lower": [-0.5] * 13, "upper": [0.5] * 13, "velocity": [1.0] * 13}))
    log = tmp_path / "applied.csv"
    emu = start_emulator(limits=path, log_applied=log)
    with pytest.raises(ProtocolMismatchError):
        BridgeHost(emu.port).connect()  # default names: another schema
    with BridgeHost(emu.port, limits=lim) as bridge:
        bridge.arm()
        sent = bridge.send_targets(np.full(13, 3.0))  # host clamps
        assert np.all(sent == 0.5)
        bridge.state.wait_newer(bridge.state.peek().seq, 1.0)
    emu.stop()
    assert np.all(read_applied(log)[0][2] == 0.5)


def test_second_process_cannot_open_the_same_port(start_emulator):
    emu = start_emulator()
    with BridgeHost(emu.port):
        code = (
            "import sys\n"
            "from firmware_bridge.host import BridgeHost\n"
            "from runtime.errors import DeviceNotConnectedError\n"
            f"b = BridgeHost({emu.port!r})\n"
            "try:\n    b.connect(timeout_s=0.5)\nexcept DeviceNotConnectedError as e:\n"
            "    print(e); sys.exit(3)\n"
            "sys.exit(0)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "exclusive" in proc.stdout


def test_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(DeviceNotConnectedError, match="cannot open serial port"):
        BridgeHost(str(tmp_path / "ttyNOPE")).connect()


def test_concurrent_senders_keep_wire_order(start_emulator, tmp_path):
    """send_targets from two threads at once: seqs reach the wire in order, none is refused as a replay."""
    import threading

    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with BridgeHost(emu.port, write_timeout_ms=2000) as bridge:
        bridge.arm()
        q = bridge.latest_state(1.0).positions
        go = threading.Barrier(2)

        def sender():
            go.wait()
            for _ in range(200):
                bridge.send_targets(q)

        threads = [threading.Thread(target=sender, name=f"sender-{i}") for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        last = bridge.last_sent_seq
        st = bridge.state.wait_newer(0, 1.0)
        deadline = bridge.clock.now() + 5.0
        while st.value.last_applied_seq != last and bridge.clock.now() < deadline:
            st = bridge.state.wait_newer(st.seq, 0.5) or st
        faults = dict(bridge.device_fault_codes)
    emu.stop()
    assert "ERR_REPLAY" not in faults and "ERR_STALE" not in faults, faults
    assert len(read_applied(log)) == 400


def test_injected_fake_clock_stamps_commands_and_states(start_emulator):
    """Timestamps come from the injected clock (waiting stays real-time, so nothing hangs)."""
    from runtime.clock import FakeClock

    clock = FakeClock(100.0)
    emu = start_emulator()
    with BridgeHost(emu.port, clock=clock) as bridge:
        bridge.arm()
        assert bridge.latest_state(max_age_s=0.0).t_host_receive == 100.0
        clock.advance(0.5)
        bridge.send_targets(bridge.latest_state().positions, t_target=100.52)
        st = bridge.state.wait_newer(bridge.state.peek().seq, 2.0)
        while st is not None and st.value.last_applied_seq != bridge.last_sent_seq:
            st = bridge.state.wait_newer(st.seq, 2.0)
        assert st is not None and st.value.echo_host_time_us == 100_500_000
        assert st.value.t_host_receive == 100.5


def test_a_firmware_reporting_another_joint_count_is_refused_in_one_line():
    """The wire format has 13 slots: a firmware whose HELLO_ACK says it drives another number of
    joints is refused even when its names hash matches (nothing is armed)."""
    import os
    import threading
    import time
    import tty

    from firmware_bridge.framer import Framer

    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    stop = threading.Event()
    lim = JointLimits.default()

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
                    ack = P.HelloAck(P.PROTOCOL_VERSION, 12, ev.body.schema_hash, 0x1234, ev.body.host_nonce,
                                     0x00020000, 0, 8, 20000, 150000, tuple(lim.lower), tuple(lim.upper),
                                     tuple(lim.max_velocity), tuple(lim.max_acceleration))
                    os.write(master, P.encode(P.Message(P.MsgType.HELLO_ACK, 1, 0x1234, ack)))

    t = threading.Thread(target=device, daemon=True)
    t.start()
    try:
        bridge = BridgeHost(port)
        with pytest.raises(ProtocolMismatchError, match=r"joint count mismatch on .*: host speaks the 13-joint "
                                                        r"wire format \(arm_joint_1, .*hand_joint_6\), firmware "
                                                        r"reports 12 joints; no motion enabled") as info:
            bridge.connect(timeout_s=2.0)
        assert "\n" not in str(info.value)
        with pytest.raises(NotArmedError):
            bridge.send_targets(np.zeros(13))
        bridge.close()
    finally:
        stop.set()
        t.join(1.0)
        os.close(master)
        os.close(slave)
