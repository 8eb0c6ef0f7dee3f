"""Operator visibility over real DDS participants (loopback): images, diagnostics, the target box."""

import threading
import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")

from dds_env import fresh_domain_id, loopback_cfg  # noqa: E402

from runtime.errors import ConfigError  # noqa: E402
from runtime.telemetry import node as node_mod  # noqa: E402
from runtime.telemetry.client import DdsClient  # noqa: E402
from runtime.telemetry.config import DdsConfig, ImagesConfig  # noqa: E402
from runtime.telemetry.images import decode_jpeg  # noqa: E402
from runtime.telemetry.node import TelemetryNode  # noqa: E402
from runtime.telemetry.types import DIAG_ERROR, DIAG_OK, DIAG_STALE, DIAG_WARN, CompressedImage_  # noqa: E402

WAIT_S = 10.0
HEAD = np.tile((np.arange(640) * 255 // 639).astype(np.uint8)[None, :, None], (480, 1, 3))
MASK = np.zeros((480, 640), bool)
MASK[100:300, 200:400] = True


def wait_for(predicate, timeout_s=WAIT_S, poll_s=0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    return predicate()


@pytest.fixture()
def make_pair():
    made = []

    def make(**overrides):
        cfg = loopback_cfg(fresh_domain_id(), **overrides)
        node = TelemetryNode(cfg, submit=lambda cmd: {"ok": True, "reason": "ok"}).start()
        client = DdsClient(cfg)
        made.append((node, client))
        return node, client

    yield make
    for node, client in made:
        client.close()
        node.stop()


def feed_frames(node, stop: threading.Event, hz: float = 30.0, name: str = "control-loop"):
    """A stand-in for the runtime thread that offers frames (here named like the control loop)."""
    def run():
        while not stop.wait(1.0 / hz):
            node.on_frames(HEAD, HEAD[:, ::-1], MASK, time.monotonic())
    th = threading.Thread(target=run, name=name, daemon=True)
    th.start()
    return th


def test_images_arrive_at_the_configured_rate_and_width_encoded_off_the_caller_thread(make_pair, monkeypatch):
    encode_threads = []
    real_encode = node_mod.encode_jpeg
    monkeypatch.setattr(node_mod, "encode_jpeg",
                        lambda *a, **k: (encode_threads.append(threading.current_thread().name), real_encode(*a, **k))[1])
    node, client = make_pair(images=ImagesConfig(rate_hz=4.0, max_width=320))
    readers = {cam: client.image_reader(cam) for cam in ("head", "wrist", "mask")}
    assert wait_for(lambda: all(len(w.get_matched_subscriptions()) for w in node._w_images.values()))
    stop = threading.Event()
    feeder = feed_frames(node, stop)
    got = {cam: [] for cam in readers}
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        for cam, r in readers.items():
            got[cam] += [m for m in r.take(N=16) if isinstance(m, CompressedImage_)]
        time.sleep(0.02)
    stop.set()
    feeder.join(2.0)
    for cam, msgs in got.items():
        # 4 Hz for 2.5 s is 10; ~75 frames were offered. Loose bounds: the shared CI machine is slow.
        assert 5 <= len(msgs) <= 13, (cam, len(msgs))
        assert msgs[-1].format == "jpeg" and msgs[-1].header.frame_id == f"dexgrasp/{cam}_camera"
        img = decode_jpeg(msgs[-1].data)
        assert img.shape[:2] == (240, 320)  # 640x480 downscaled to max_width, aspect kept
    assert abs(int(decode_jpeg(got["head"][-1].data)[0, -1, 0]) - 255) < 12  # the gradient survived
    mask = decode_jpeg(got["mask"][-1].data)
    assert mask.ndim == 2 and mask[100, 150] > 200 and mask[10, 10] < 50  # mask white on black, scaled
    assert encode_threads and set(encode_threads) == {"dds-images"}  # never the thread that offered frames
    assert node.counters["images_skipped_rate"] > 30 and node.counters["image_errors"] == 0


def test_a_busy_encoder_drops_frames_and_counts_them_without_blocking_the_caller(make_pair, monkeypatch):
    release = threading.Event()
    entered = threading.Event()

    def slow_encode(*a, **k):
        entered.set()
        release.wait(WAIT_S)
        return b"\xff\xd8\xff\xd9", 1, 1

    monkeypatch.setattr(node_mod, "encode_jpeg", slow_encode)
    node, _ = make_pair(images=ImagesConfig(rate_hz=10.0))
    node.on_frames(HEAD, None, None, time.monotonic())
    assert entered.wait(WAIT_S)  # the image thread is now stuck in the encoder
    offered = 0
    t_end = time.monotonic() + 0.6
    while time.monotonic() < t_end:  # the caller keeps offering; every call returns (no blocking)
        node.on_frames(HEAD, None, None, time.monotonic())
        offered += 1
        time.sleep(0.01)
    release.set()
    assert offered > 20
    assert node.counters["images_dropped_busy"] >= 3  # due frames replaced while the encoder was busy
    assert wait_for(lambda: node.counters["images_published"] >= 1)


def levels(client_reader):
    arrays = [a for a in client_reader.take(N=16) if hasattr(a, "status")]
    return None if not arrays else {s.name.removeprefix("dexgrasp: "): s for s in arrays[-1].status}


def test_diagnostics_levels_follow_injected_faults(make_pair):
    node, client = make_pair(status_rate_hz=10.0, stale_after_s=0.5)
    reader = client.diagnostics_reader()
    latest = {}

    def level_is(part, level):
        got = levels(reader)
        if got:
            latest.update(got)
        return part in latest and latest[part].level == level

    # nothing observed yet: STALE for the loop, link and cameras
    assert wait_for(lambda: level_is("loop", DIAG_STALE) and level_is("link", DIAG_STALE)
                    and level_is("cameras", DIAG_STALE))
    assert latest["link"].message == "no joint state yet" and latest["loop"].hardware_id == "dexgrasp"

    node.on_status({"hold_reason": None, "policy_enabled": True, "protective_stop": False})
    node.on_joint_state(np.zeros(13))
    node.on_frames(HEAD, None, MASK, time.monotonic())
    assert wait_for(lambda: level_is("loop", DIAG_OK) and level_is("link", DIAG_OK) and level_is("cameras", DIAG_OK))
    assert {kv.key: kv.value for kv in latest["cameras"].values}["head_size"] == "640x480"

    # silent cameras and joint states: STALE again after stale_after_s
    assert wait_for(lambda: level_is("cameras", DIAG_STALE) and level_is("link", DIAG_STALE))

    node.on_status({"hold_reason": "protective_stop", "policy_enabled": False, "protective_stop": True})
    assert wait_for(lambda: level_is("loop", DIAG_ERROR))
    node.on_status({"hold_reason": "link_down", "policy_enabled": True, "protective_stop": False})
    assert wait_for(lambda: level_is("link", DIAG_ERROR))
    assert "link_down" in latest["link"].message
    node.on_status({"hold_reason": "waiting_for_chunk", "policy_enabled": True, "missed_cycles": 3})
    assert wait_for(lambda: level_is("loop", DIAG_WARN) and level_is("policy", DIAG_WARN))

    node.on_episode_event({"source": "planner", "event": "planner reply", "task": "bbox", "ok": False,
                           "result": {}, "error_code": "timeout", "error_message": "planner timed out"})
    assert wait_for(lambda: level_is("planner", DIAG_WARN))
    assert "planner timed out" in latest["planner"].message


def test_the_planner_box_is_published_and_in_the_diagnostics(make_pair):
    node, client = make_pair(status_rate_hz=10.0)
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from runtime.robot.ros2_types import Float64MultiArray_
    from runtime.telemetry import qos

    box_reader = DataReader(client._dp, Topic(client._dp, qos.TOPIC_PLANNER_BOX, Float64MultiArray_,
                                              qos=qos.diagnostics_qos()), qos=qos.diagnostics_qos())
    diag = client.diagnostics_reader()
    node.on_episode_event({"source": "planner", "event": "planner reply", "task": "bbox", "ok": True,
                           "result": {"bbox": [12, 34, 156, 178]}})

    def box_is(expected):
        samples = [s for s in box_reader.take(N=16) if hasattr(s, "data")]
        return bool(samples) and list(samples[-1].data) == expected

    assert wait_for(lambda: box_is([12.0, 34.0, 156.0, 178.0]))
    got = wait_for(lambda: (d := levels(diag)) and d["planner"].level == DIAG_OK and d)
    values = {kv.key: kv.value for kv in got["planner"].values}
    assert values["box"] == "[12.0, 34.0, 156.0, 178.0]" and values["box_source"] == "planner"
    node.on_episode_event({"source": "episode", "event": "phase idle", "box": None})  # episode over: no box
    assert wait_for(lambda: box_is([]))


@pytest.mark.parametrize("raw, message", [
    ({"rate_hz": 50}, "images.rate_hz: expected 0.1..10 Hz"),
    ({"max_width": 8}, "images.max_width"),
    ({"enabled": "yes"}, "images.enabled: expected true/false"),
    ({"quality": 50}, "unknown field(s) ['quality']"),
    ([2], "expected a mapping"),
])
def test_bad_image_settings_are_refused_naming_the_field(raw, message):
    with pytest.raises(ConfigError, match=None) as err:
        DdsConfig.from_dict({"images": raw})
    assert message in str(err.value)


def test_the_foxglove_layout_shows_topics_the_runtime_publishes():
    """docs/foxglove_layout.json must name real topics (ROS 2 names = DDS names without 'rt')."""
    import json
    import re
    from pathlib import Path

    from runtime.telemetry import qos

    layout = json.loads((Path(__file__).parents[3] / "docs" / "foxglove_layout.json").read_text())
    published = {t.removeprefix("rt") for t in (qos.TOPIC_JOINT_STATES, qos.TOPIC_JOINT_COMMANDS, qos.TOPIC_STATUS,
                                                qos.TOPIC_DIAGNOSTICS, qos.TOPIC_PLANNER_BOX)}
    published |= {qos.image_topic(c).removeprefix("rt") for c in ("head", "wrist", "mask")}
    named = set(re.findall(r'"(/[a-z_/]+)', json.dumps(layout["configById"])))
    named = {re.sub(r"\.\w.*$", "", n) for n in named}
    assert {"/dexgrasp/head/image/compressed", "/diagnostics", "/dexgrasp/planner/box"} <= named
    assert named <= published, named - published

    def panels(node):
        return [node] if isinstance(node, str) else panels(node["first"]) + panels(node["second"])

    assert sorted(panels(layout["layout"])) == sorted(layout["configById"])  # every panel is placed
