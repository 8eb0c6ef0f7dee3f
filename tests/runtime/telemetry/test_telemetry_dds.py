"""Real Cyclone DDS participants in one process (loopback only): telemetry out, commands in."""

import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")

from dds_env import fresh_domain_id, loopback_cfg  # noqa: E402

from runtime.telemetry.client import DdsClient  # noqa: E402
from runtime.telemetry.node import TelemetryNode  # noqa: E402
from runtime.telemetry.types import JointState_  # noqa: E402

WAIT_S = 10.0  # generous: only ever reached when something is broken


def wait_for(predicate, timeout_s=WAIT_S, poll_s=0.01):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    return predicate()


class FakeRuntime:
    """Stands in for app.submit_command: a tiny state machine that refuses what it cannot do."""

    def __init__(self):
        self.phase = "idle"
        self.prompt = None
        self.bbox = None
        self.calls = []
        self.lock = threading.Lock()

    def submit_command(self, cmd: dict):
        with self.lock:
            self.calls.append(cmd)
            if cmd["cmd"] == "start":
                if self.phase != "idle":
                    raise ValueError(f"cannot start while {self.phase}")
                self.phase, self.prompt = "running", cmd["prompt"]
            elif cmd["cmd"] == "stop":
                self.phase = "stopped"
            elif cmd["cmd"] == "clear":
                self.phase = "idle"
            elif cmd["cmd"] == "manual_bbox":
                self.bbox = cmd["bbox"]


@pytest.fixture()
def pair():
    cfg = loopback_cfg(fresh_domain_id())
    runtime = FakeRuntime()
    node = TelemetryNode(cfg, submit=runtime.submit_command).start()
    client = DdsClient(cfg)
    assert client.wait_for_runtime(WAIT_S), "the client never discovered the node's command reader"
    yield node, client, runtime
    client.close()
    node.stop()


def test_joint_states_and_commands_arrive_with_ros2_types_and_values(pair):
    node, client, _ = pair
    states, commands = client.joint_reader(), client.joint_reader(commands=True)
    assert wait_for(lambda: node._w_states.get_matched_subscriptions())
    assert wait_for(lambda: node._w_commands.get_matched_subscriptions())

    class State:  # the runtime's state object shape (JointState: names/positions/velocities/t_host_receive)
        names = tuple(f"arm_joint_{i}" for i in range(1, 8)) + tuple(f"hand_joint_{i}" for i in range(1, 7))
        positions = np.linspace(-1.0, 1.0, 13)
        velocities = np.full(13, 0.5)
        t_host_receive = time.monotonic()

    t_before = time.time()
    node.on_joint_state(State())
    node.on_command(np.arange(13, dtype=np.float32) * 0.1, time.monotonic())
    got_state = wait_for(lambda: states.take(N=10))
    got_cmd = wait_for(lambda: commands.take(N=10))
    assert len(got_state) == 1 and isinstance(got_state[0], JointState_)
    msg = got_state[0]
    assert msg.position == pytest.approx(State.positions.tolist())
    assert msg.velocity == pytest.approx([0.5] * 13) and msg.effort == []
    assert msg.name[:2] == ["arm_joint_1", "arm_joint_2"] and msg.name[-1] == "hand_joint_6"
    assert msg.header.frame_id == "dexgrasp"
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    assert abs(stamp - t_before) < 5.0  # monotonic capture time converted to wall-clock
    assert got_cmd[0].position == pytest.approx((np.arange(13) * 0.1).tolist(), abs=1e-6)
    assert node.counters["joint_states_published"] == 1 and node.counters["joint_commands_published"] == 1


def test_status_is_json_and_reaches_late_joiners(pair):
    node, client, _ = pair
    node.on_status({"phase": "grasp", "loop": {"p99_us": np.float64(412.0)}, "bad": float("nan")})
    node.on_episode_event({"event": "episode_start", "prompt": "grasp the red cube"})
    late = DdsClient(node.cfg)  # joins after statuses were published: transient-local delivers them
    try:
        doc = wait_for(lambda: (d := late.latest_status(0.05)) and d["runtime"].get("phase") == "grasp" and d)
    finally:
        late.close()
    assert doc["schema"] == "dexgrasp.status/1"
    assert doc["runtime"] == {"phase": "grasp", "loop": {"p99_us": 412.0}, "bad": None}
    assert doc["last_event"]["prompt"] == "grasp the red cube"
    assert doc["submit_attached"] is True


def test_commands_change_runtime_state_through_submit(pair):
    node, client, runtime = pair
    result = client.wait_result(client.send("start", prompt="grasp the red cube"), WAIT_S)
    assert result["result"] == "accepted" and runtime.phase == "running" and runtime.prompt == "grasp the red cube"
    node.on_frames(np.zeros((480, 640, 3), np.uint8), None, None, time.monotonic())  # boxes need a head image
    assert client.wait_result(client.send("manual_bbox", bbox=[10, 20, 30, 40]), WAIT_S)["result"] == "accepted"
    assert runtime.bbox == [10.0, 20.0, 30.0, 40.0]
    # the runtime refuses a second start: the reason travels back on the status topic
    refused = client.wait_result(client.send("start", prompt="again"), WAIT_S)
    assert refused == {**refused, "result": "rejected", "reason": "cannot start while running"}
    assert client.wait_result(client.send("stop"), WAIT_S)["result"] == "accepted" and runtime.phase == "stopped"
    assert client.wait_result(client.send("clear"), WAIT_S)["result"] == "accepted" and runtime.phase == "idle"
    assert [c["cmd"] for c in runtime.calls] == ["start", "manual_bbox", "start", "stop", "clear"]
    assert all(c["source"] == "dds" for c in runtime.calls)


@pytest.mark.parametrize("text, reason", [
    ('{"cmd": "self_destruct", "id": "bad1"}', "unknown command 'self_destruct'"),
    ('{"cmd": "manual_bbox", "bbox": [5, 5, 1, 1], "id": "bad2"}', "is not a box"),
    ('{"cmd": "start", "id": "bad3"}', "non-empty 'prompt'"),
])
def test_invalid_commands_are_rejected_with_reason_on_status(pair, text, reason):
    node, client, runtime = pair
    client.send_raw(text)
    result = client.wait_result(json.loads(text)["id"], WAIT_S)
    assert result["result"] == "rejected" and reason in result["reason"]
    assert runtime.calls == []
    assert node.gate.counters.rejected_invalid == 1


def test_garbage_is_counted_and_rejected_without_an_id(pair):
    node, client, runtime = pair
    client.send_raw("definitely not json")
    doc = wait_for(lambda: (d := client.latest_status(0.05)) and d["commands"]["rejected_invalid"] == 1 and d)
    assert doc["command_results"][-1]["result"] == "rejected"
    assert "not valid JSON" in doc["command_results"][-1]["reason"]
    assert runtime.calls == []


def test_command_flood_is_bounded_and_the_observer_side_never_waits():
    # A bucket that does not refill during the test: exactly `burst` starts/clears get through.
    cfg = loopback_cfg(fresh_domain_id(), command_rate_hz=0.001, command_burst=5, command_queue=64)
    runtime = FakeRuntime()
    with TelemetryNode(cfg, submit=lambda c: runtime.calls.append(c)) as node:
        client = DdsClient(cfg)
        assert client.wait_for_runtime(WAIT_S)
        produced = threading.Event()

        def producer():  # the app's dispatcher thread keeps feeding joint states during the flood
            for i in range(2000):
                node.on_joint_state(np.full(13, float(i)))
            produced.set()

        threading.Thread(target=producer, name="test-producer").start()
        n_flood = 200
        for i in range(n_flood):
            client.send("clear", id=f"f{i}")
        stop_id = client.send("stop")  # never rate-limited: a protective stop must get through a flood
        assert client.wait_result(stop_id, WAIT_S)["result"] == "accepted"
        assert produced.wait(WAIT_S)
        client.close()
        counters = node.gate.counters
    # Keep-last histories (writer and reader, COMMAND_HISTORY deep) may already have shed part of the
    # burst inside DDS; whatever reached the node is bounded by the bucket and counted exactly.
    received_clears = counters.received - 1
    assert 5 <= received_clears <= n_flood
    assert counters.dropped_flood == received_clears - 5
    assert [c["cmd"] for c in runtime.calls].count("clear") == 5
    assert any(c["cmd"] == "stop" for c in runtime.calls)
    # every joint sample was published or dropped-and-counted by the bounded deque
    total = node.counters["joint_states_published"] + node.counters["joint_samples_dropped"]
    assert total <= 2000 and 2000 - total <= cfg.telemetry_queue


def test_command_age_never_trusts_the_senders_clock_and_replays_are_refused(pair):
    node, client, runtime = pair
    session = client.runtime_session(WAIT_S)
    text = json.dumps({"cmd": "clear", "id": "skew", "sender": "host-b", "seq": 1, "session": session})
    # the sender's wall clock is an hour behind: the command is still fresh on arrival
    client._w_cmd.write(client._String(data=text), timestamp=time.time_ns() - 3600 * 10**9)
    assert client.wait_result("skew", WAIT_S)["result"] == "accepted"
    client.send_raw(text.replace('"skew"', '"again"'))  # a recorded copy, replayed
    replayed = client.wait_result("again", WAIT_S)
    assert replayed["result"] == "rejected" and "replay: seq 1 from sender 'host-b'" in replayed["reason"]
    assert [c["cmd"] for c in runtime.calls] == ["clear"]


def test_configured_security_on_a_cyclone_build_without_it_fails_closed(tmp_path):
    from runtime.errors import ConfigError
    from runtime.telemetry.config import SecurityConfig
    from runtime.telemetry.security import security_support

    if security_support() is None:
        pytest.skip("this Cyclone DDS build has DDS-Security")
    files = {}
    for name in ("identity_ca", "identity_certificate", "private_key", "permissions_ca", "governance", "permissions"):
        (tmp_path / f"{name}.pem").write_text("x")
        files[name] = str(tmp_path / f"{name}.pem")
    cfg = loopback_cfg(fresh_domain_id(), security=SecurityConfig(**files))
    with pytest.raises(ConfigError, match="DDS-Security is configured but this Cyclone DDS build lacks DDS-Security"):
        TelemetryNode(cfg).start()
