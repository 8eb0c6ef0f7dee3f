"""The whole runtime (fake robot and policy, synthetic cameras, classical tracker) with DDS telemetry
and the episode recorder wired by the app's config sections: an operator starts and stops an
episode over DDS, and the episode lands on disk in the training layout, verified."""

import time

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")
pytest.importorskip("zarr", reason="the record extra (zarr) is not installed")

from dds_env import fresh_domain_id  # noqa: E402

from runtime.app import App  # noqa: E402
from runtime.cameras.synthetic import make_synthetic_cameras  # noqa: E402
from runtime.clock import Clock  # noqa: E402
from runtime.config import config_from_dict  # noqa: E402
from runtime.config.components import BridgeHandle  # noqa: E402
from runtime.execution.fakes import FakeBridge, FakeChunkPolicy  # noqa: E402
from runtime.recording import list_episodes, load_episode  # noqa: E402
from runtime.telemetry.client import DdsClient  # noqa: E402
from runtime.telemetry.config import DdsConfig  # noqa: E402

WAIT_S = 30.0


def wait_for(pred, timeout_s=WAIT_S):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    return pred()


def make_app(domain_id, record_dir):
    dds = {"enabled": True, "domain_id": domain_id, "interface": "lo", "allow_multicast": False,
           "peers": ["127.0.0.1"], "status_rate_hz": 10}
    cfg = config_from_dict({
        "control": {"rate_hz": 100, "realtime": {"sched_fifo_priority": None, "mlockall": False}},
        "tracker": {"kind": "classical", "manual_box_xyxy": [40, 40, 120, 120]},
        "planner": {"enabled": False, "autostart": False},
        "bridge": {"kind": "fake"},
        "policy": {"backend": "fake"},
        "safety": {"auto_rearm": True},
        "telemetry": {"dds": dds},
        "recording": {"dir": str(record_dir), "chunk_frames": 4, "min_free_mb": 0},
    }, "e2e")
    clock = Clock()
    bridge = FakeBridge(13, clock, lower=np.asarray(cfg.robot.lower), upper=np.asarray(cfg.robot.upper))
    _, head, wrist = make_synthetic_cameras(lambda: bridge.latest_state(None).positions, clock=clock, fps=15)
    app = App(cfg, clock=clock, bridge_handle=BridgeHandle(bridge, description="fake"), cameras=(head, wrist, None),
              policy=FakeChunkPolicy(latency_s=0.05))
    return app, DdsConfig.from_dict(dds)


def test_operator_episode_over_dds_is_recorded_in_training_layout(tmp_path):
    app, dds_cfg = make_app(fresh_domain_id(), tmp_path)
    app.start()
    client = DdsClient(dds_cfg)
    try:
        assert client.wait_for_runtime(WAIT_S), "the app's telemetry node never appeared on DDS"
        states = client.joint_reader()
        # tracker.manual_box_xyxy autostarts an episode with the config's prompt once the first
        # head frame is in; let that happen first so the operator's start supersedes it (no race)
        assert wait_for(lambda: app.loop.policy_enabled.is_set()), "the autostart never enabled the policy"
        started = client.wait_result(client.send("start", prompt="grasp the red cube"), WAIT_S)
        assert started["result"] == "accepted", started
        assert wait_for(lambda: states.take(N=50)), "no joint states from the running app"
        recorder = next(o for o in app.dispatcher._observers if type(o).__name__ == "EpisodeRecorder")
        assert wait_for(lambda: recorder.counters["frames_written"] >= 6), recorder.status()
        stopped = client.wait_result(client.send("stop"), WAIT_S)
        assert stopped["result"] == "accepted", stopped
        status = wait_for(lambda: (d := client.latest_status(0.1)) and d["runtime"] and d)
        assert status["schema"] == "dexgrasp.status/1" and status["submit_attached"]
        bad = client.wait_result(client.send("manual_bbox", bbox=[9, 9, 1, 1]), WAIT_S)
        assert bad["result"] == "rejected" and "is not a box" in bad["reason"]
        assert wait_for(lambda: recorder.counters["episodes_finished"] >= 1), recorder.status()
    finally:
        client.close()
        app.run(duration_s=0.0)  # stops everything (observers closed last)
    # the autostart's episode (superseded at once) may or may not have kept a frame; the operator's
    # episode is there exactly once
    ours = [ep for ep in map(load_episode, list_episodes(tmp_path))  # manifest + checksums verified
            if ep.info["prompt"] == "grasp the red cube"]
    assert len(ours) == 1
    ep = ours[0]
    n = ep.frames
    assert n >= 6
    h, w = ep.data["rgbm"].shape[1:3]
    assert ep.data["rgbm"].shape == (n, h, w, 4) and ep.data["rgbm"].dtype == np.uint8
    assert set(np.unique(ep.data["rgbm"][..., 3])) <= {0, 1} and ep.data["rgbm"][..., 3].any()  # tracked mask
    assert ep.data["right_cam_img"].shape[0] == n and ep.data["right_cam_img"].shape[3] == 3
    assert ep.data["right_state"].shape == (n, 13) and ep.data["action"].shape == (n, 13)
    assert np.all(np.abs(ep.data["right_state"][:, :7]) <= 1.0 + 1e-6)  # arm scaled to [-1, 1] like upstream
    assert np.all(np.diff(ep.data["timestamp"]) > 0)
    assert any(e.get("event") == "command start" for e in ep.events)


def test_the_running_app_shows_images_diagnostics_and_takes_an_operator_box(tmp_path, monkeypatch):
    """The app's own wiring (tracker -> dispatcher -> telemetry node): head/wrist/mask images go out
    encoded on dds-images only, /diagnostics reports the live parts OK, and a box reaches the runtime."""
    import threading

    from runtime.telemetry import node as node_mod
    from runtime.telemetry.images import decode_jpeg
    from runtime.telemetry.types import DIAG_OK, CompressedImage_

    threads = set()
    real = node_mod.encode_jpeg
    monkeypatch.setattr(node_mod, "encode_jpeg",
                        lambda *a, **k: (threads.add(threading.current_thread().name), real(*a, **k))[1])
    app, dds_cfg = make_app(fresh_domain_id(), tmp_path)
    app.start()
    client = DdsClient(dds_cfg)
    try:
        assert client.wait_for_runtime(WAIT_S)
        heads, masks, diag = client.image_reader("head"), client.image_reader("mask"), client.diagnostics_reader()
        head = wait_for(lambda: [m for m in heads.take(N=8) if isinstance(m, CompressedImage_)])
        mask = wait_for(lambda: [m for m in masks.take(N=8) if isinstance(m, CompressedImage_)])
        assert head and mask, "no images from the running app"
        img = decode_jpeg(head[-1].data)
        assert img.shape[1] <= 320 and img.ndim == 3

        def live():
            arrays = [a for a in diag.take(N=16) if hasattr(a, "status")]
            if not arrays:
                return None
            levels = {s.name: s.level for s in arrays[-1].status}
            ok = all(levels.get(f"dexgrasp: {p}") == DIAG_OK for p in ("loop", "link", "cameras"))
            return levels if ok else None

        assert wait_for(live), "diagnostics never showed the loop, link and cameras OK"
        assert threads == {"dds-images"}  # the control loop / dispatcher never encode

        ok = client.wait_result(client.send("manual_bbox", bbox=[30, 30, 90, 90]), WAIT_S)
        assert ok["result"] == "accepted" and "target box" in ok["reason"], ok
        whole = client.wait_result(client.send("manual_bbox", bbox=[0, 0, 5000, 5000]), WAIT_S)
        assert whole["result"] == "rejected" and "outside" in whole["reason"], whole
    finally:
        client.close()
        app.run(duration_s=0.0)
