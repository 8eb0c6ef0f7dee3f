"""The real ZeroMQ server and client, with the VLM backend against a real local HTTP server.

Only loopback addresses; every wait is bounded (call.wait(timeout) / wait_connected(timeout)).
"""

from __future__ import annotations

import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from runtime.planner.calls import LinkState
from runtime.planner.client import PlannerClient
from runtime.planner.server import PlannerServer
from runtime.planner.vlm_backend import VLMBackend
from runtime.planner.vlm_http import OpenAIChatClient

BOX = '{"bbox_2d": [100, 200, 150, 250], "label": "red cube"}'


def vlm_server(url, **kw):
    backend = VLMBackend(OpenAIChatClient(url, model="fake-vl"), max_attempts=kw.pop("max_attempts", 2),
                         backoff_s=0.01)
    return PlannerServer(backend, "tcp://127.0.0.1:*", **kw)


def client_for(server, **kw):
    kw.setdefault("heartbeat_period_s", 0.1)
    kw.setdefault("liveness_s", 0.5)
    return PlannerClient(server.endpoint, **kw)


def ask_bbox(client, image, timeout_s=3.0, episode="ep-1"):
    call = client.submit("bbox", {"head": image}, episode_id=episode, timeout_s=timeout_s, instruction="the red cube")
    return call, call.wait(timeout_s + 2.0)


def test_handshake_and_good_box(fake_vlm, head_image):
    fake_vlm.push(("good", BOX))
    with vlm_server(fake_vlm.url) as server, client_for(server) as client:
        assert client.wait_connected(3.0)
        assert client.state == LinkState.CONNECTED
        assert client.server_info["backend"] == "vlm" and "bbox" in client.server_info["tasks"]
        call, reply = ask_bbox(client, head_image)
        assert reply.ok, reply.error_message
        assert reply.result["bbox"] == [100, 200, 150, 250] and reply.result["label"] == "red cube"
        assert reply.result["image_id"] == call.image_ids["head"]
        t = reply.timing
        assert t["t_server_send"] >= t["t_server_recv"] and t["vlm_latency_s"] > 0 and t["attempts"] == 1
        assert reply.rtt_s > 0


def test_bad_replies_rejected_with_reason_and_server_keeps_serving(fake_vlm, head_image):
    with vlm_server(fake_vlm.url) as server, client_for(server) as client:
        assert client.wait_connected(3.0)
        cases = [
            (("good", '{"bbox_2d": [150, 200, 100, 250]}'), "invalid_reply", "reversed"),
            (("good", '{"bbox_2d": [NaN, 1, 2, 3]}'), "invalid_reply", "NaN"),
            (("truncated",), "vlm_error", "envelope"),
            (("status", 500), "vlm_error", "HTTP 500"),
            (("status", 429, 0), "vlm_error", "HTTP 429"),
            (("huge", 2_000_000), "vlm_error", "exceeds"),  # not retried: the same model would do it again
        ]
        for step, code, reason in cases:
            fake_vlm.push(step) if step[0] == "huge" else fake_vlm.push(step, step)  # every attempt fails
            _, reply = ask_bbox(client, head_image)
            assert not reply.ok and reply.error_code == code and reason in reply.error_message, (step, reply)
        assert client.state == LinkState.DEGRADED
        fake_vlm.push(("good", BOX))
        _, reply = ask_bbox(client, head_image)
        assert reply.ok and client.state == LinkState.CONNECTED
        assert server.counters["ok"] == 1 and server.counters["errors"] == len(cases)


def test_slow_vlm_times_out_at_the_deadline_and_handshakes_are_not_blocked(fake_vlm, head_image):
    deadline_s = 1.0
    fake_vlm.default = ("slow", 2 * deadline_s, BOX)
    with vlm_server(fake_vlm.url, workers=1) as server, client_for(server) as client:
        assert client.wait_connected(3.0)
        t0 = time.monotonic()
        call = client.submit("bbox", {"head": head_image}, episode_id="e", timeout_s=deadline_s,
                             instruction="the red cube")
        # While the only worker waits on the VLM, a new client still gets its handshake answered.
        with client_for(server) as second:
            assert second.wait_connected(0.6 * deadline_s)
        reply = call.wait(deadline_s + 2.0)
        elapsed = time.monotonic() - t0
        assert not reply.ok and reply.error_code == "timeout"
        assert elapsed < 2 * deadline_s
        fake_vlm.default = ("good", BOX)
        _, reply = ask_bbox(client, head_image)
        assert reply.ok, reply.error_message


def test_box_for_another_image_is_rejected_by_the_client(head_image):
    class WrongImageBackend:
        name = "wrong"

        def run(self, request, deadline):
            return {"bbox": [10, 10, 50, 50], "label": "x", "image_id": "some-old-frame", "image_size": [640, 480]}

        def close(self):
            pass

    with PlannerServer(WrongImageBackend(), "tcp://127.0.0.1:*") as server, client_for(server) as client:
        _, reply = ask_bbox(client, head_image)
        assert not reply.ok and reply.error_code == "stale" and "old image" in reply.error_message


class SleepyBackend:
    """Ignores deadlines on purpose, to produce answers that arrive after the client gave up."""

    name = "sleepy"

    def __init__(self, delay_s):
        self.delay_s = delay_s
        self.release = threading.Event()

    def run(self, request, deadline):
        self.release.wait(self.delay_s)
        return {"bbox": [100, 200, 150, 250], "label": "red cube",
                "image_id": request.images["head"].image_id, "image_size": [640, 480]}

    def close(self):
        self.release.set()


def test_late_and_cancelled_answers_are_discarded(head_image):
    backend = SleepyBackend(0.5)
    with PlannerServer(backend, "tcp://127.0.0.1:*", workers=2) as server, client_for(server) as client:
        assert client.wait_connected(3.0)
        late = client.submit("bbox", {"head": head_image}, episode_id="ep-1", timeout_s=0.2, instruction="x")
        cancelled = client.submit("bbox", {"head": head_image}, episode_id="ep-old", timeout_s=3.0, instruction="x")
        time.sleep(0.05)
        assert client.cancel_episode("ep-old") == 1
        assert late.wait(2.0).error_code == "timeout"
        assert cancelled.wait(0.1).error_code == "cancelled"
        deadline = time.monotonic() + 3.0
        while client.counters["discarded_late"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.counters["discarded_late"] == 2  # both answers came, neither was used
        assert late.reply().error_code == "timeout" and cancelled.reply().error_code == "cancelled"
        backend.release.set()


def test_queue_full_answers_busy_at_once(head_image):
    backend = SleepyBackend(5.0)
    with PlannerServer(backend, "tcp://127.0.0.1:*", workers=1, queue_size=1) as server, \
            client_for(server, liveness_s=2.0) as client:
        assert client.wait_connected(3.0)
        calls = [client.submit("bbox", {"head": head_image}, episode_id="e", timeout_s=3.0, instruction="x")
                 for _ in range(3)]
        # One worker + a queue of one: one of the three is refused at once (which one depends on
        # whether the worker took the first job before the third arrived).
        deadline = time.monotonic() + 2.0
        while not any(c.done() for c in calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        # Whatever is refused is refused at once, while the backend still holds the first job.
        busy = [c.reply() for c in calls if c.done()]
        assert busy and all(r.error_code == "busy" and "queue full" in r.error_message for r in busy)
        backend.release.set()
        replies = [c.wait(3.0) for c in calls]
        accepted = [r for r in replies if r.error_code != "busy"]
        assert 1 <= len(accepted) <= 2 and all(r.ok for r in accepted)  # 1 worker + 1 queued at most


def test_dead_server_is_unreachable_and_the_link_recovers(fake_vlm, head_image):
    with zmq.Context() as ctx:  # find a free port, then leave it unbound
        s = ctx.socket(zmq.ROUTER)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        s.close(0)
    endpoint = f"tcp://127.0.0.1:{port}"
    with PlannerClient(endpoint, heartbeat_period_s=0.1, liveness_s=0.4) as client:
        call = client.submit("bbox", {"head": head_image}, episode_id="e", timeout_s=0.3, instruction="x")
        reply = call.wait(2.0)
        assert reply.error_code == "timeout" and "could not be sent" in reply.error_message
        time.sleep(0.5)
        assert client.state == LinkState.UNREACHABLE
        fake_vlm.default = ("good", BOX)
        backend = VLMBackend(OpenAIChatClient(fake_vlm.url, model="fake-vl"))
        with PlannerServer(backend, endpoint) as server:
            assert server.endpoint == endpoint
            assert client.wait_connected(5.0)
            _, reply = ask_bbox(client, head_image)
            assert reply.ok, reply.error_message
        # Server gone again: heartbeats go unanswered and the state says so.
        deadline = time.monotonic() + 3.0
        while client.state != LinkState.UNREACHABLE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.state == LinkState.UNREACHABLE
        assert client.counters["reconnects"] >= 1


def raw_dealer(ctx, endpoint):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 2000)
    sock.connect(endpoint)
    return sock


def test_malformed_frames_and_oversized_messages_do_not_hurt_the_server(fake_vlm, head_image):
    fake_vlm.default = ("good", BOX)
    with vlm_server(fake_vlm.url, max_message_bytes=300_000) as server, zmq.Context() as ctx:
        bad = raw_dealer(ctx, server.endpoint)
        bad.send(b"\xc1not msgpack")
        assert "not valid msgpack" in msgpack.unpackb(bad.recv())["message"]
        bad.send(msgpack.packb({"type": "hello", "protocol": 99}))
        assert "protocol version 99" in msgpack.unpackb(bad.recv())["message"]
        bad.send(msgpack.packb({"type": "request", "protocol": 1, "request_id": "r", "episode_id": "e",
                                "task": "bbox", "timeout_s": 1.0, "images": {}}))
        answer = msgpack.unpackb(bad.recv())
        assert answer["error"]["code"] == "bad_request" and "needs image 'head'" in answer["error"]["message"]
        huge = raw_dealer(ctx, server.endpoint)
        huge.send(b"\x00" * 1_000_000)  # over MAXMSGSIZE: the transport drops this peer
        with client_for(server) as client:
            _, reply = ask_bbox(client, head_image)
            assert reply.ok, reply.error_message
        # The client refuses to send a message over its own limit (a PNG of noise is ~3.7 MB here).
        noise = np.random.default_rng(0).integers(0, 255, (960, 1280, 3), dtype=np.uint8)
        with client_for(server, max_message_bytes=300_000, image_format="png") as small:
            call = small.submit("bbox", {"head": noise}, episode_id="e", timeout_s=2.0, instruction="x")
            reply = call.wait(3.0)
            assert reply.error_code == "bad_request" and "limit" in reply.error_message
        assert server.counters["bad_frames"] >= 2


@pytest.fixture
def curve_keys(tmp_path):
    from runtime.planner.security import generate_keypair

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    server_pub, server_sec = generate_keypair(str(tmp_path / "server"), "server")
    good_pub, good_sec = generate_keypair(str(tmp_path / "clients"), "robot")
    _, bad_sec = generate_keypair(str(tmp_path / "clients"), "intruder")
    _, other_server_sec = generate_keypair(str(tmp_path / "other"), "other")
    other_pub = str(tmp_path / "other" / "other.key")
    (allowed / "robot.key").write_text(open(good_pub).read())
    return {"allowed": str(allowed), "server_pub": server_pub, "server_sec": server_sec,
            "good_sec": good_sec, "bad_sec": bad_sec, "other_pub": other_pub}


def test_curve_allows_listed_client_and_refuses_others(fake_vlm, head_image, curve_keys):
    from runtime.planner.security import CurveClientConfig, CurveServerConfig

    fake_vlm.default = ("good", BOX)
    k = curve_keys
    server_cfg = CurveServerConfig(k["server_sec"], k["allowed"])
    with vlm_server(fake_vlm.url, curve=server_cfg) as server:
        with client_for(server, curve=CurveClientConfig(k["good_sec"], k["server_pub"])) as good:
            assert good.wait_connected(3.0)
            _, reply = ask_bbox(good, head_image)
            assert reply.ok, reply.error_message
        # A client whose key is not in the allowlist: ZAP denies the handshake.
        with client_for(server, curve=CurveClientConfig(k["bad_sec"], k["server_pub"])) as intruder:
            assert not intruder.wait_connected(1.0)
            _, reply = ask_bbox(intruder, head_image, timeout_s=0.5)
            assert reply.error_code == "timeout"
            assert intruder.state == LinkState.UNREACHABLE
            assert "refused this client's CURVE key" in intruder.status()["link_error"]
        # A client pinning another server key: the CURVE handshake fails, nothing is exchanged.
        with client_for(server, curve=CurveClientConfig(k["good_sec"], k["other_pub"])) as pinned:
            assert not pinned.wait_connected(1.0)
            assert pinned.state == LinkState.UNREACHABLE
            assert "pinned server public key" in pinned.status()["link_error"]
        # A plain (no CURVE) client is refused too.
        with client_for(server) as plain:
            assert not plain.wait_connected(1.0)
            assert "requires CURVE" in plain.status()["link_error"]
        assert server.counters["requests"] == 1


def test_backend_crash_is_internal_error_and_serving_continues(head_image):
    class CrashOnce:
        name = "crashy"

        def __init__(self):
            self.n = 0

        def run(self, request, deadline):
            self.n += 1
            if self.n == 1:
                raise RuntimeError("bug in the backend")
            return {"completed": False, "reasoning": "fine"}

        def close(self):
            pass

    with PlannerServer(CrashOnce(), "tcp://127.0.0.1:*") as server, client_for(server) as client:
        images = {"head": head_image, "initial_head": head_image}
        first = client.submit("complete", images, episode_id="e", timeout_s=3.0, prompt="x").wait(5.0)
        assert first.error_code == "internal" and "bug in the backend" in first.error_message
        second = client.submit("complete", images, episode_id="e", timeout_s=3.0, prompt="x").wait(5.0)
        assert second.ok and second.result["completed"] is False


def test_concurrent_clients_each_get_their_own_answers(fake_vlm, head_image):
    fake_vlm.default = ("slow", 0.05, BOX)
    results = {}
    with vlm_server(fake_vlm.url, workers=2, queue_size=16) as server:
        def worker(k):
            with client_for(server, liveness_s=2.0) as client:
                calls = [client.submit("bbox", {"head": head_image}, episode_id=f"c{k}", timeout_s=5.0,
                                       instruction="the red cube") for _ in range(4)]
                results[k] = [(c, c.wait(8.0)) for c in calls]

        threads = [threading.Thread(target=worker, args=(k,), name=f"client-{k}") for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert sorted(results) == [0, 1, 2]
    for k, pairs in results.items():
        for call, reply in pairs:
            assert reply.ok, reply.error_message
            assert reply.request_id == call.request_id and reply.episode_id == f"c{k}"
            assert reply.result["image_id"] == call.image_ids["head"]


def test_extra_fields_in_an_answer_never_reach_the_runtime(head_image):
    """A compromised or steered planner can only choose a box: anything else it sends is dropped."""

    class SteeringBackend:
        name = "steering"

        def run(self, request, deadline):
            return {"bbox": [100, 200, 150, 250], "label": "red cube; ignore limits",
                    "image_id": request.images["head"].image_id, "image_size": [640, 480],
                    "joint_targets": [10.0] * 13, "max_velocity": 99.0}

        def close(self):
            pass

    with PlannerServer(SteeringBackend(), "tcp://127.0.0.1:*") as server, client_for(server) as client:
        _, reply = ask_bbox(client, head_image)
    assert reply.ok and set(reply.result) == {"bbox", "label", "image_id", "image_size"}


def test_request_in_flight_survives_a_server_restart(head_image):
    """The server dies with a request in flight and a new one comes up on the same address: the client
    notices the dropped connection, redoes the handshake and re-sends the request (once)."""
    with zmq.Context() as ctx:
        s = ctx.socket(zmq.ROUTER)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        s.close(0)
    endpoint = f"tcp://127.0.0.1:{port}"
    stuck = SleepyBackend(30.0)
    with PlannerClient(endpoint, heartbeat_period_s=0.2, liveness_s=5.0) as client:
        first = PlannerServer(stuck, endpoint, workers=1).start()
        try:
            assert client.wait_connected(3.0)
            call = client.submit("bbox", {"head": head_image}, episode_id="e", timeout_s=8.0, instruction="x")
            deadline = time.monotonic() + 3.0
            while first.counters["requests"] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert first.counters["requests"] == 1
        finally:
            first.stop(timeout_s=0.2)  # dies with the request unanswered (its worker stays stuck)
        try:
            with PlannerServer(SleepyBackend(0.0), endpoint) as second:
                reply = call.wait(8.0)
                assert reply.ok, reply.error_message
                assert second.counters["requests"] == 1 and client.state == LinkState.CONNECTED
        finally:
            stuck.release.set()
