"""FAULTS.md "Serial link", each case against the real emulator over pseudo-terminals.

What is applied is read from the emulator's --log-applied file, so "nothing applied" is checked at
the firmware end, not inferred from the host."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.errors import NotArmedError
from firmware_bridge.host import BridgeHost
from firmware_bridge.joints import JointLimits
from firmware_bridge.testing import PtyProxy, RawClient, read_applied
from firmware_bridge.vectors_gen import raw_frame
from runtime.rate import Rate

HASH = JointLimits.default().schema_hash


def wait_until(pred, timeout_s: float, what: str) -> None:
    """Wait on an Event with a short timeout until `pred()` holds (no fixed sleeps)."""
    ev = threading.Event()
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        ev.wait(0.005)


@pytest.fixture
def raw_emulator(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    client = RawClient(emu.port)
    ack = client.handshake(HASH)
    assert ack.result == 0
    yield emu, client, log
    client.close()


def targets(client: RawClient, seq: int, host_time_us: int, q=None) -> P.Message:
    q = np.zeros(13) + 0.5 * (np.arange(13) >= 7) if q is None else q
    return P.targets(seq, client.session, host_time_us, q)


def longest_run(lost: list[int]) -> int:
    """Longest run of consecutive seqs in the sorted list `lost`."""
    longest, run = 0, 0
    for a, b in zip(lost, lost[1:] + [None], strict=True):
        run += 1
        if b != a + 1:
            longest, run = max(longest, run), 0
    return longest


CORRUPT_RATE_HZ = 500.0
CORRUPT_SECONDS = 10.0  # the emulator runs on the wall clock; the 60 s stepped run is in test_fw_semantic_fuzz


def test_one_percent_corruption_nothing_corrupted_is_applied(start_emulator, tmp_path):
    """1% of the bytes corrupted both ways for 10 s at 500 Hz: nothing damaged is applied, and the
    stream never drops out of motion. Strict: no re-arm (the old test re-armed on its own, so a
    safe-off passed unseen); the watchdog must never trip and the longest run of lost commands must
    stay well inside the 150 ms safe-off window."""
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with PtyProxy(emu.port, corrupt_h2d=0.01, corrupt_d2h=0.01, seed=5).start() as proxy:
        bridge = BridgeHost(proxy.port, request_retries=20, timeout_ms=500, write_timeout_ms=1000)
        bridge.connect(timeout_s=10)
        bridge.arm()
        q0 = bridge.latest_state(1.0).positions
        rate = Rate(CORRUPT_RATE_HZ, name="corrupt-stream")
        sent = {}
        worst_gap, t_prev = 0.0, time.monotonic()
        for k in range(int(CORRUPT_SECONDS * CORRUPT_RATE_HZ)):
            rate.sleep()
            q = q0.copy()
            q[:7] += 0.05 * np.sin(k / 100)
            try:
                out = bridge.send_targets(q)
            except NotArmedError as exc:  # never re-armed here: a safe-off or stop fails the test
                st = bridge.latest_state()
                pytest.fail(f"motion ended after {k} commands ({exc}); firmware mode {st.mode.name} "
                            f"fault_flags 0x{st.fault_flags:04x}; worst host send gap {worst_gap * 1e3:.0f} ms")
            sent[bridge.last_sent_seq] = out
            now = time.monotonic()
            worst_gap, t_prev = max(worst_gap, now - t_prev), now
        proxy.corrupt_h2d = proxy.corrupt_d2h = 0.0  # a clean line to read the firmware's latched flags
        seq0 = bridge.state.peek().seq
        bridge.send_targets(q)
        final = bridge.state.wait_newer(seq0, 1.0).value
        c = bridge.counters()
        link_up, armed = bridge.link_up, bridge.armed
        bridge.close()
    emu.stop()
    applied = read_applied(log)
    applied_seqs = [r[0] for r in applied]
    assert proxy.damaged_frames > 100 and proxy.clean_frames > 100 and proxy.undecodable_originals == 0
    assert not set(applied_seqs) & proxy.corrupted_seqs, "a frame damaged on the wire was applied"
    for seq, _, values in applied:  # and every applied value is exactly what the host sent
        if seq in sent:
            np.testing.assert_array_equal(values.astype(np.float32), sent[seq].astype(np.float32))
    assert len(applied) > 0.3 * len(sent)
    assert c["crc_errors"] + c["resyncs"] > 0 and c["reconnects"] == 0 and link_up and armed
    assert c["second_writer"] == 0  # corruption never looks like another writer
    # watchdog trips: the safe-off flag is sticky until ARM, and nothing re-armed
    trips = int(bool(final.fault_flags & P.FAULT_WATCHDOG_SAFE_OFF)) + int(final.mode is P.Mode.SAFE_OFF)
    assert trips == 0 and final.mode in (P.Mode.ARMED, P.Mode.HOLD), (final.mode, hex(final.fault_flags))
    longest = longest_run(sorted(set(sent) - set(applied_seqs)))
    safe_off_cmds = 0.150 * CORRUPT_RATE_HZ
    assert longest < safe_off_cmds / 2, f"{longest} commands in a row lost ({safe_off_cmds:.0f} = safe-off)"
    print(f"\n1% corruption, {CORRUPT_SECONDS:.0f} s wall at {CORRUPT_RATE_HZ:.0f} Hz: sent={len(sent)} "
          f"applied={len(applied)} damaged_frames={proxy.damaged_frames} host crc_errors={c['crc_errors']} "
          f"resyncs={c['resyncs']} longest run of lost commands={longest} watchdog trips={trips} "
          f"worst host send gap={worst_gap * 1e3:.1f} ms")


def test_truncation_at_every_offset_then_next_frame_applies(raw_emulator):
    emu, client, log = raw_emulator
    good = P.encode(targets(client, 5000, 10))
    burst = b"".join(P.encode(targets(client, 100 + cut, 1))[:cut] + b"\x00" for cut in range(1, len(good) - 1))
    client.send_raw(burst)
    assert client.request(P.MsgType.ARM).body.acked_seq == client.seq  # the next good frame parses
    client.send(targets(client, 6000, 20))
    client.wait_for(lambda m: m.type is P.MsgType.STATE and m.body.last_applied_seq == 6000)
    faults = [m for m in client.received if isinstance(m, P.Message) and m.type is P.MsgType.FAULT]
    assert len(faults) == len(good) - 2  # every truncated frame rejected and reported
    emu.stop()
    assert [r[0] for r in read_applied(log)] == [6000]


def test_garbage_burst_64k_without_delimiters(raw_emulator):
    emu, client, log = raw_emulator
    rng = random.Random(9)
    client.send_raw(bytes(rng.randrange(1, 256) for _ in range(65536)) + b"\x00")
    ack = client.request(P.MsgType.ARM)
    assert ack.type is P.MsgType.ACK and ack.body.result == 0
    client.send(targets(client, client.next_seq(), 10))
    st = client.wait_for(lambda m: m.type is P.MsgType.STATE and m.body.last_applied_seq == client.seq)
    # one rejection for the whole burst (the FAULT frame itself may have been dropped by the
    # emulator while this client was busy writing and not reading; the state counters are not)
    assert st.body.rx_errors == 1 and st.body.last_error == P.ErrorCode.ERR_OVERSIZE
    emu.stop()
    assert len(read_applied(log)) == 1


@pytest.mark.parametrize("case,expected", [
    ("len0", P.ErrorCode.ERR_LENGTH), ("len65535", P.ErrorCode.ERR_LENGTH),
    ("type0x7f", P.ErrorCode.ERR_TYPE), ("type0x20", P.ErrorCode.ERR_TYPE),
    ("device_type", P.ErrorCode.ERR_DIRECTION),
])
def test_bad_lengths_and_types_rejected_and_reported(raw_emulator, case, expected):
    emu, client, log = raw_emulator
    client.request(P.MsgType.ARM)
    body = targets(client, 1, 1).body.pack()
    seq = client.next_seq()
    frame = {
        "len0": raw_frame(0x10, body, declared_len=0, seq=seq, session=client.session),
        "len65535": raw_frame(0x10, body, declared_len=65535, seq=seq, session=client.session),
        "type0x7f": raw_frame(0x7F, b"", seq=seq, session=client.session),
        "type0x20": raw_frame(0x20, body, seq=seq, session=client.session),
        "device_type": P.encode(P.Message(P.MsgType.STATE, seq, client.session, P.StateBody())),
    }[case]
    client.send_raw(frame)
    fault = client.wait_for(lambda m: m.type is P.MsgType.FAULT)
    assert fault.body.error == expected
    client.send(targets(client, client.next_seq(), 10))  # the link is fine afterwards
    client.wait_for(lambda m: m.type is P.MsgType.STATE and m.body.last_applied_seq == client.seq)
    emu.stop()
    assert [r[0] for r in read_applied(log)] == [client.seq]


def test_replayed_and_reordered_frames_not_applied(raw_emulator):
    emu, client, log = raw_emulator
    client.request(P.MsgType.ARM)
    base = client.seq
    plan = [(base + 10, 1000, None), (base + 10, 1000, "ERR_REPLAY"), (base + 9, 990, "ERR_REPLAY"),
            (base + 11, 500, "ERR_STALE"), (base + 12, 1200, None)]
    for seq, t_us, err in plan:
        client.send(targets(client, seq, t_us))
        if err:
            f = client.wait_for(lambda m, s=seq: m.type is P.MsgType.FAULT and m.body.rejected_seq == s)
            assert P.ErrorCode.name_of(f.body.error) == err
        else:
            client.wait_for(lambda m, s=seq: m.type is P.MsgType.STATE and m.body.last_applied_seq == s)
    emu.stop()
    assert [r[0] for r in read_applied(log)] == [base + 10, base + 12]


@pytest.mark.parametrize("silence_s", [0.01, 0.05, 0.2, 2.0])
def test_host_silence_hold_then_latched_safe_off(raw_emulator, silence_s):
    emu, client, log = raw_emulator
    client.request(P.MsgType.ARM)
    q0 = np.array(client.state().positions)
    goal = q0.copy()
    goal[0] += 1.0  # far away: the joint is moving at its velocity limit when the host goes quiet
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.25:
        client.send(targets(client, client.next_seq(), int((time.monotonic() - t0) * 1e6) + 1, goal))
        client.poll(0.002)
    last_cmd_seq = client.seq
    # The silence is measured on the FIRMWARE's clock (mcu_time_us of its state reports), so a
    # loaded machine that delays either process cannot fake or hide a watchdog transition.
    deadline = time.monotonic() + silence_s + 5.0

    def observed():
        sts = [m.body for m in client.received if isinstance(m, P.Message) and m.type is P.MsgType.STATE]
        applied_at = [st.mcu_time_us for st in sts if st.last_applied_seq == last_cmd_seq]
        if not applied_at:
            return None, []
        t0_us = min(applied_at)
        after = [st for st in sts if st.mcu_time_us >= t0_us]
        return (after[-1].mcu_time_us - t0_us) * 1e-6, after

    while True:  # read, never write
        client.poll(0.002)
        measured_s, states = observed()
        if measured_s is not None and measured_s >= silence_s:
            break
        assert time.monotonic() < deadline, "no state reports during the silence"
    modes = [P.Mode(st.mode) for st in states]
    vmax = JointLimits.default().max_velocity[0]
    assert max(abs(s.velocities[0]) for s in states) <= vmax * 1.3  # never faster than the limit
    latched = measured_s > 0.155 or (measured_s > 0.13 and P.Mode.SAFE_OFF in modes)
    if latched:
        assert P.Mode.HOLD in modes and modes[-1] is P.Mode.SAFE_OFF
        assert modes.index(P.Mode.HOLD) < modes.index(P.Mode.SAFE_OFF)
        assert states[-1].fault_flags & P.FAULT_WATCHDOG_SAFE_OFF
        assert abs(states[-1].velocities[0]) < 0.1  # decelerated to rest
        # resuming the stream does not move the robot: rejected until re-armed
        seq = client.next_seq()
        client.send(targets(client, seq, 10_000_000, q0))
        f = client.wait_for(lambda m: m.type is P.MsgType.FAULT and m.body.rejected_seq == seq)
        assert f.body.error == P.ErrorCode.ERR_SAFE_OFF
        p_before = np.array(client.state().positions)
        p_after = np.array(client.state().positions)
        assert np.abs(p_after - p_before).max() < 0.01
        client.request(P.MsgType.ARM)
        seq = client.next_seq()
        client.send(targets(client, seq, 10_000_001, q0))
        client.wait_for(lambda m: m.type is P.MsgType.STATE and m.body.last_applied_seq == seq)
    else:
        assert silence_s < 0.2, f"a {silence_s} s silence must latch safe-off"
        assert P.Mode.SAFE_OFF not in modes
        if measured_s >= 0.04:
            assert P.Mode.HOLD in modes
        seq = client.next_seq()
        client.send(targets(client, seq, 10_000_000, q0))  # resumes without re-arm
        st = client.wait_for(lambda m: m.type is P.MsgType.STATE and m.body.last_applied_seq == seq)
        assert P.Mode(st.body.mode) is P.Mode.ARMED
    emu.stop()
    applied = [r[0] for r in read_applied(log)]
    assert last_cmd_seq in applied and applied[-1] == seq
    if latched:
        assert seq - 2 not in applied  # the resumed-but-not-armed command


def test_firmware_reset_new_session_requires_handshake_and_rearm(start_emulator, tmp_path):
    log = tmp_path / "applied.csv"
    emu = start_emulator(log_applied=log)
    with BridgeHost(emu.port, write_timeout_ms=1000) as bridge:
        # let the old session's clock pass 1 s, so the new session's rows (its clock restarts at
        # the reset) are recognisable in the log by their smaller mcu_time_us
        wait_until(lambda: bridge.state.peek().value.mcu_time_us > 1_000_000, 3.0, "old session clock > 1 s")
        bridge.arm()
        q = bridge.latest_state(1.0).positions
        old_session = bridge.session_id
        for _ in range(20):
            bridge.send_targets(q)
        wait_until(lambda: bridge.state.peek().value.last_applied_seq == bridge.last_sent_seq, 2.0, "all applied")
        n_before = len(read_applied(log))
        assert n_before == 20
        emu.reset()  # SIGUSR1: firmware reboot, new session id
        refused = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            try:
                bridge.send_targets(q)  # to the OLD session until detected: firmware rejects them
            except NotArmedError:
                refused += 1
                break
            threading.Event().wait(0.002)
        assert refused == 1, "host never noticed the firmware reset"
        assert bridge.wait_ready(3.0)
        assert bridge.session_id not in (None, old_session)
        assert bridge.needs_rearm and not bridge.armed
        with pytest.raises(NotArmedError, match="re-arm"):
            bridge.send_targets(q)
        bridge.arm()
        assert not bridge.needs_rearm
        bridge.send_targets(q)
        wait_until(lambda: bridge.state.peek().value.last_applied_seq == bridge.last_sent_seq, 2.0, "applied")
        c = bridge.counters()
    emu.stop()
    rows = read_applied(log)
    # mcu_time restarts at the reset: rows after the drop belong to the new session
    boot = [i for i in range(1, len(rows)) if rows[i][1] < rows[i - 1][1]]
    assert len(boot) == 1 and boot[0] >= n_before
    new_session_rows = rows[boot[0]:]
    assert [r[0] for r in new_session_rows] == [bridge.last_sent_seq]  # only the one sent after re-arm
    assert c["session_changes"] >= 1


def test_emulator_killed_and_restarted(start_emulator, tmp_path):
    link = tmp_path / "ttyDEXGRASP"
    log = tmp_path / "applied.csv"
    emu = start_emulator(link=link, log_applied=log)
    with BridgeHost(str(link)) as bridge:
        bridge.arm()
        q = bridge.latest_state(1.0).positions
        bridge.send_targets(q)
        wait_until(lambda: bridge.state.peek().value.last_applied_seq == bridge.last_sent_seq, 2.0, "applied")
        old_session = bridge.session_id
        emu.kill()
        wait_until(lambda: not bridge.link_up, 2.0, "link loss detected")
        with pytest.raises((NotArmedError, ConnectionError)):
            bridge.send_targets(q)
        n_before = len(read_applied(log))
        start_emulator(link=link, log_applied=log)  # a new firmware boot behind the same port name
        assert bridge.wait_ready(5.0), "host did not reconnect and re-handshake"
        assert bridge.session_id != old_session and bridge.needs_rearm
        with pytest.raises(NotArmedError):
            bridge.send_targets(q)
        assert len(read_applied(log)) == n_before
        bridge.arm()
        bridge.send_targets(q)
        bridge.state.wait_newer(bridge.state.peek().seq, 1.0)
        c = bridge.counters()
    assert c["reconnects"] >= 1 and c["timeouts"] >= 1
    assert len(read_applied(log)) == n_before + 1


def test_link_silent_then_back_rehandshakes_and_needs_rearm(start_emulator):
    emu = start_emulator()
    with PtyProxy(emu.port).start() as proxy:
        with BridgeHost(proxy.port, timeout_ms=100, request_timeout_ms=500) as bridge:
            bridge.arm()
            bridge.send_targets(bridge.latest_state(1.0).positions)
            proxy.drop_all.set()
            wait_until(lambda: not bridge.link_up and bridge.counters()["timeouts"] >= 1, 2.0, "link loss detected")
            threading.Event().wait(0.2)  # keep the cable "pulled" past the firmware's safe-off timeout
            proxy.drop_all.clear()
            wait_until(lambda: bridge.link_up and bridge.session_id is not None, 3.0, "link back")
            assert bridge.needs_rearm and not bridge.armed
            assert bridge.counters()["timeouts"] >= 1 and bridge.counters()["reconnects"] >= 1
            bridge.arm()
