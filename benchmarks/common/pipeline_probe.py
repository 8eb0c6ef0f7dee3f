"""Instrumented stand-ins that time every stage of the running runtime (runtime.app.App).

The App accepts injected components; these wrap the real ones and record timestamps on the
runtime's monotonic clock without changing what they do:

    TimedCamera       capture: frame capture time -> frame returned by the camera (render + deliver)
    TimedTracker      tracker: track() of each head frame
    TimedPolicy       preprocess (process_obs), encoder, denoise (the DDIM loop), un-normalize
    ChunkMailbox      postprocess ends when the chunk (arm scaled, time-stamped) is published
    TimedBridge       command sent: send_targets() of each control cycle (the serial write), and the
                      first write of every new chunk = the end of observation-to-actuation

Frames are matched across threads by the identity of their image array (the runtime passes the
same array from camera to tracker to policy), chunks by their sequence number.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict

import numpy as np

from runtime.mailbox import Mailbox

#: Stages in pipeline order, with the thread (lane) each runs on in the App.
STAGES = (
    ("capture", "camera thread"),
    ("tracker", "tracker thread"),
    ("preprocess", "policy thread"),
    ("encoder", "policy thread"),
    ("denoise", "policy thread"),
    ("postprocess", "policy thread"),
    ("command sent", "control thread"),
)
LANE = dict(STAGES)


class StageRecorder:
    """Thread-safe store of stage durations and of per-frame spans. Bounded memory.

    Spans of every frame (capture, tracker) are kept for the last `max_frames` frames; a frame the
    policy starts on is promoted to the cycle store (last `max_cycles`), so its spans survive
    however long the inference takes while the cameras keep producing frames."""

    def __init__(self, clock, max_frames: int = 400, max_cycles: int = 1000) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._spans: OrderedDict[float, dict] = OrderedDict()
        self._cycle_spans: OrderedDict[float, dict] = OrderedDict()
        self.max_cycles = max_cycles
        self._image_keys: OrderedDict[int, float] = OrderedDict()
        self._chunk_keys: dict[int, float] = {}
        self._acted: set[int] = set()
        self.cycles: list[dict] = []
        self.max_frames = max_frames
        self.policy_pending: dict = {}

    # ---- frames ---------------------------------------------------------------------------------
    def register_image(self, image: np.ndarray, key: float) -> None:
        with self._lock:
            self._image_keys[id(image)] = key
            while len(self._image_keys) > self.max_frames:
                self._image_keys.popitem(last=False)

    def key_of(self, image: np.ndarray) -> float | None:
        with self._lock:
            return self._image_keys.get(id(image))

    def span(self, key: float | None, stage: str, t0: float, t1: float) -> None:
        with self._lock:
            self.samples[stage].append(t1 - t0)
            if key is None:
                return
            if key in self._cycle_spans:
                self._cycle_spans[key][stage] = (t0, t1)
                return
            self._spans.setdefault(key, {})[stage] = (t0, t1)
            while len(self._spans) > self.max_frames:
                self._spans.popitem(last=False)

    def promote(self, key: float | None) -> None:
        """Keep this frame's spans until the end of the run (the policy is working on it)."""
        if key is None:
            return
        with self._lock:
            self._cycle_spans.setdefault(key, {}).update(self._spans.pop(key, {}))
            while len(self._cycle_spans) > self.max_cycles:
                self._cycle_spans.popitem(last=False)

    def spans_of(self, key: float) -> dict:
        with self._lock:
            return dict(self._cycle_spans.get(key) or self._spans.get(key, {}))

    # ---- chunks ---------------------------------------------------------------------------------
    def chunk_published(self, seq: int, t_now: float) -> None:
        pending, self.policy_pending = self.policy_pending, {}
        key = pending.get("key")
        if "t_post" in pending:
            self.span(key, "postprocess", pending["t_post"], t_now)
        with self._lock:
            self._chunk_keys[seq] = key

    def command_sent(self, chunk, t0: float, t1: float) -> None:
        """Every control cycle's write; the first one after a new chunk closes obs-to-actuation."""
        if chunk is None or chunk.seq in self._acted:
            self.span(None, "command sent", t0, t1)
            return
        with self._lock:
            self._acted.add(chunk.seq)
            key = self._chunk_keys.get(chunk.seq)
        self.span(key, "command sent", t0, t1)
        self.cycles.append({"seq": chunk.seq, "key": key, "t_obs": chunk.t_obs, "t_write_end": t1,
                            "obs_to_actuation_s": t1 - chunk.t_obs,
                            "inference_s": chunk.inference_s})


class _Proxy:
    """Delegates every attribute it does not define to the wrapped object."""

    def __init__(self, inner) -> None:
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class TimedCamera(_Proxy):
    def __init__(self, inner, recorder: StageRecorder, stage: str | None) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_rec", recorder)
        object.__setattr__(self, "_stage", stage)

    def read(self, *args, **kwargs):
        frame = self._inner.read(*args, **kwargs)
        t1 = self._rec.clock.now()
        if self._stage is not None:
            self._rec.register_image(frame.image, frame.t_capture)
            self._rec.span(frame.t_capture, self._stage, frame.t_capture, t1)
        return frame


class TimedTracker(_Proxy):
    def __init__(self, inner, recorder: StageRecorder) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_rec", recorder)

    def track(self, image_bgr):
        t0 = self._rec.clock.now()
        result = self._inner.track(image_bgr)
        self._rec.span(self._rec.key_of(image_bgr), "tracker", t0, self._rec.clock.now())
        return result


class TimedPolicy:
    """The runtime's ControllerPolicy, split into its stages: process_obs, Controller.encode,
    Controller.denoise from seeded noise, then the manifest's un-normalization (Controller.predict)."""

    def __init__(self, controller, recorder: StageRecorder) -> None:
        from runtime.controller.preprocess import process_obs

        self.controller = controller
        self.process_obs = process_obs
        self.rec = recorder
        self.seed = 0

    def predict_chunk(self, head_bgr, mask, wrist_bgr, state13):
        c, rec, clock = self.controller, self.rec, self.rec.clock
        key = rec.key_of(head_bgr)
        rec.promote(key)
        self.seed += 1
        t0 = clock.now()
        obs = self.process_obs(head_bgr, mask, wrist_bgr, np.asarray(state13, dtype=np.float32))
        t1 = clock.now()
        kv = c.encode(obs)
        t2 = clock.now()
        noise = np.random.default_rng(self.seed).standard_normal(c.sample_shape).astype(np.float32)
        sample = c.denoise(kv, noise)
        t3 = clock.now()
        action = ((sample.reshape(c.action_shape) - c.offset) / c.scale).astype(np.float32)
        if not np.all(np.isfinite(action)):
            from runtime.errors import ModelError

            raise ModelError("the controller produced non-finite actions (corrupt model?)")
        rec.span(key, "preprocess", t0, t1)
        rec.span(key, "encoder", t1, t2)
        rec.span(key, "denoise", t2, t3)
        rec.policy_pending = {"key": key, "t_post": t3}
        return action


class ChunkMailbox(Mailbox):
    """The App's chunk mailbox, noting when each chunk is published (end of postprocess)."""

    def __init__(self, name: str, clock, recorder: StageRecorder) -> None:
        super().__init__(name, clock)
        self.rec = recorder

    def put(self, value, t_capture=None):
        item = super().put(value, t_capture)
        self.rec.chunk_published(getattr(value, "seq", -1), self.clock.now())
        return item


class TimedBridge(_Proxy):
    """Times send_targets; `executor` (set once the App is built) tells which chunk is executing."""

    def __init__(self, inner, recorder: StageRecorder) -> None:
        super().__init__(inner)
        object.__setattr__(self, "_rec", recorder)
        object.__setattr__(self, "executor", None)

    def send_targets(self, positions, t_target):
        clock = self._rec.clock
        t0 = clock.now()
        sent = self._inner.send_targets(positions, t_target)
        t1 = clock.now()
        executor = self.executor
        chunk = executor.blender.newest if executor is not None else None
        self._rec.command_sent(chunk, t0, t1)
        return sent
