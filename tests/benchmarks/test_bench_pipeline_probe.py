"""The stage probes attribute time to the right stage and frame, driven by a fake clock (exact)."""

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.common import pipeline_probe as probe
from runtime.clock import FakeClock
from runtime.execution.chunk import TimedChunk


class FakeCamera:
    def __init__(self, clock, render_s):
        self.clock, self.render_s, self.fps, self.name = clock, render_s, 30.0, "third"

    def read(self, timeout_ms=100.0):
        t_capture = self.clock.now()
        self.clock.advance(self.render_s)
        return SimpleNamespace(image=np.zeros((4, 6, 3), np.uint8), t_capture=t_capture, index=0)


class FakeTracker:
    def __init__(self, clock):
        self.clock = clock

    def track(self, image):
        self.clock.advance(0.004)
        return SimpleNamespace(mask=np.ones(image.shape[:2], np.uint8))


class FakeController:
    """encode/denoise with known costs; the normalizer doubles the actions."""

    sample_shape = (1, 2, 13)
    action_shape = (2, 13)
    offset = np.zeros(13, np.float32)
    scale = np.full(13, 0.5, np.float32)

    def __init__(self, clock):
        self.clock = clock

    def encode(self, obs):
        self.clock.advance(0.5)
        return {"obs_k": 0}

    def denoise(self, kv, sample):
        self.clock.advance(0.25)
        return np.ones(self.sample_shape, np.float32)


def fake_process_obs(head, mask, wrist, state, clock):
    clock.advance(0.03)
    return {"rgbm": head}


def test_stages_and_observation_to_actuation_are_attributed_exactly():
    clock = FakeClock(100.0)
    rec = probe.StageRecorder(clock)
    cam = probe.TimedCamera(FakeCamera(clock, 0.002), rec, "capture")
    tracker = probe.TimedTracker(FakeTracker(clock), rec)
    policy = probe.TimedPolicy(FakeController(clock), rec)
    policy.process_obs = lambda *a: fake_process_obs(*a, clock=clock)
    chunks = probe.ChunkMailbox("chunks", clock, rec)
    executor = SimpleNamespace(blender=SimpleNamespace(newest=None))
    sent = []
    bridge = probe.TimedBridge(SimpleNamespace(send_targets=lambda q, t: (clock.advance(0.0001), sent.append(q))[1],
                                               link_up=True), rec)
    bridge.executor = executor

    frame = cam.read(100.0)
    assert cam.fps == 30.0 and bridge.link_up  # everything else is delegated
    tracker.track(frame.image)
    clock.advance(0.010)  # the policy thread picks the tracked frame up 10 ms later
    action = policy.predict_chunk(frame.image, np.ones((4, 6), np.uint8), frame.image, np.zeros(13))
    np.testing.assert_allclose(action, 2.0)  # (1 - 0) / 0.5
    clock.advance(0.001)  # the worker scales the arm and stamps the chunk
    chunk = TimedChunk(positions=np.zeros((2, 13)), t_obs=frame.t_capture, t_start=frame.t_capture, dt_s=0.05,
                       seq=1, inference_s=0.78)
    chunks.put(chunk, t_capture=frame.t_capture)
    bridge.send_targets(np.zeros(13), 0.0)  # a cycle before the executor took the chunk: not actuation
    assert rec.cycles == []
    clock.advance(0.003)
    executor.blender.newest = chunk
    bridge.send_targets(np.zeros(13), 0.0)
    bridge.send_targets(np.zeros(13), 0.0)  # a second write of the same chunk is not counted again

    def one(stage):
        (value,) = rec.samples[stage][-1:]
        return value

    assert one("capture") == pytest.approx(0.002)
    assert one("tracker") == pytest.approx(0.004)
    assert one("preprocess") == pytest.approx(0.03)
    assert one("encoder") == pytest.approx(0.5)
    assert one("denoise") == pytest.approx(0.25)
    assert one("postprocess") == pytest.approx(0.001)
    assert len(rec.samples["command sent"]) == 3 and len(sent) == 3
    (cycle,) = rec.cycles
    # capture 2 + tracker 4 + wait 10 + preprocess 30 + encoder 500 + denoise 250 + post 1
    # + first (unattributed) write 0.1 + wait 3 + write 0.1 = 800.2 ms
    assert cycle["obs_to_actuation_s"] == pytest.approx(0.8002)
    spans = rec.spans_of(frame.t_capture)
    assert list(spans) == ["capture", "tracker", "preprocess", "encoder", "denoise", "postprocess", "command sent"]
    assert spans["command sent"][1] - frame.t_capture == pytest.approx(0.8002)


def test_recorder_memory_is_bounded():
    clock = FakeClock()
    rec = probe.StageRecorder(clock, max_frames=5)
    images = [np.zeros(1) for _ in range(10)]
    for i, img in enumerate(images):
        rec.register_image(img, float(i))
        rec.span(float(i), "capture", float(i), float(i) + 0.1)
    assert rec.key_of(images[0]) is None and rec.key_of(images[-1]) == 9.0
    assert rec.spans_of(0.0) == {} and "capture" in rec.spans_of(9.0)
    assert len(rec.samples["capture"]) == 10  # durations are all kept


def test_a_frame_in_inference_keeps_its_spans_while_newer_frames_arrive():
    clock = FakeClock()
    rec = probe.StageRecorder(clock, max_frames=3)
    img = np.zeros(1)
    rec.register_image(img, 0.0)
    rec.span(0.0, "capture", 0.0, 0.001)
    rec.promote(rec.key_of(img))  # the policy starts on frame 0
    for i in range(1, 20):  # the cameras keep going during a long inference
        rec.span(float(i), "capture", float(i), float(i) + 0.001)
    rec.span(0.0, "command sent", 19.0, 19.0001)
    assert set(rec.spans_of(0.0)) == {"capture", "command sent"}
    assert rec.spans_of(1.0) == {}  # an ordinary old frame is forgotten


def test_stage_table_shows_each_stage_share_of_observation_to_actuation():
    from benchmarks.stages import _stage_table

    table = _stage_table({"encoder": {"count": 3, "p50": 60.0, "p99": 70.0, "max": 71.0}},
                         {"count": 3, "p50": 80.0, "p99": 90.0, "max": 95.0})
    assert table["rows"][0][-1] == "75.0 %"
    assert table["rows"][-1][:2] == ["observation -> actuation", "end to end"]
    assert len(table["columns"]) == len(table["rows"][0])
