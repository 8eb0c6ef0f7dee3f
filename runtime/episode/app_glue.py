"""`make_episode(app)`: the episode runner wired to runtime/app.py's tracker, control loop and bridge.

`cfg.planner` chooses the planner: backend "local" = the OpenCV backend in this process (the sim
default, no server), "remote" = a PlannerClient to `address` (a `dexgrasp planner serve`).
`cfg.planner.options` may hold:

    episode: {planner_timeout_s: 30, max_grasp_duration_s: 100, ...}   # EpisodeConfig fields
    client:  {heartbeat_period_s: 1.0, liveness_s: 3.0, max_side_px: 640, image_format: jpeg}
    curve:   {secret_key_file: robot.key_secret, server_public_key_file: server.key}
    grasp:   {hand_closed_delta: 0.4, lift_height_m: 0.05, closed_wait_s: 1.5, lost_frames_limit: 30}

Verification timing: upstream verifies while the end effector is above a height threshold. Here
GraspSignal(hand_closed, arm_lifted) is computed from the measured joints: the hand counts as closed
when its joints moved `hand_closed_delta` (mean, normalised) from where they were when the
controller took over; the arm counts as lifted when the wrist rose `lift_height_m` since the hand
closed (the synthetic scene's FK is used when the app runs the sim) or, without a kinematic model,
once the hand has stayed closed for `closed_wait_s` (the controller lifts right after closing).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import fields

import numpy as np

from runtime.episode.machine import (
    EpisodeConfig,
    GraspSignal,
    HomeReached,
    TrackerLost,
    TrackerReady,
)
from runtime.episode.runner import EpisodeRunner
from runtime.errors import ConfigError, StaleDataError

log = logging.getLogger(__name__)

_KNOWN_OPTIONS = ("episode", "client", "curve", "grasp", "local")


def _section(options: dict, name: str) -> dict:
    value = options.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"planner.options.{name} must be a mapping, got {type(value).__name__}")
    return dict(value)


def episode_config_from(options: dict, image_size: tuple[int, int]) -> EpisodeConfig:
    """EpisodeConfig from `planner.options.episode`, naming any unknown field."""
    unknown = set(options) - set(_KNOWN_OPTIONS)
    if unknown:
        raise ConfigError(f"planner.options: unknown key(s) {sorted(unknown)}; expected {list(_KNOWN_OPTIONS)}")
    ep = _section(options, "episode")
    allowed = {f.name for f in fields(EpisodeConfig)}
    bad = set(ep) - allowed
    if bad:
        raise ConfigError(f"planner.options.episode: unknown field(s) {sorted(bad)}; known: {sorted(allowed)}")
    ep.setdefault("image_size", tuple(image_size))
    ep["image_size"] = tuple(ep["image_size"])
    return EpisodeConfig(**ep)


def make_planner(cfg, clock):
    """The Planner for `cfg.planner`: InProcessPlanner(LocalBackend) or PlannerClient(address)."""
    options = cfg.planner.options or {}
    if cfg.planner.backend == "local":
        from runtime.planner.inprocess import InProcessPlanner
        from runtime.planner.local_backend import LocalBackend

        return InProcessPlanner(LocalBackend(**_section(options, "local")), clock)
    if not cfg.planner.address:
        raise ConfigError("planner.backend 'remote' needs planner.address (e.g. tcp://gpu-server:5557)")
    from runtime.planner.client import PlannerClient
    from runtime.planner.security import CurveClientConfig

    curve = _section(options, "curve")
    try:
        curve_cfg = CurveClientConfig(**curve) if curve else None
        return PlannerClient(cfg.planner.address, clock, curve=curve_cfg, **_section(options, "client"))
    except TypeError as exc:
        raise ConfigError(f"planner.options.client/curve: {exc}") from exc


class AppActuator:
    """EpisodeActuator over runtime.app.App. Every method returns at once."""

    def __init__(self, app, hand_closed_delta: float = 0.4, lift_height_m: float = 0.05,
                 closed_wait_s: float = 1.5, lost_frames_limit: int = 30) -> None:
        self.app = app
        self.hand_closed_delta = hand_closed_delta
        self.lift_height_m = lift_height_m
        self.closed_wait_s = closed_wait_s
        self.lost_frames_limit = lost_frames_limit
        self._init_after_seq: int | None = None
        self._grasping = False
        self._lost_in_a_row = 0
        self._last_seq = 0
        self._closed_since: float | None = None
        self._hand_ref: np.ndarray | None = None
        self._z_low = np.inf
        self._pending: list = []  # events from other threads (homing callback); guarded by _lock
        self._lock = threading.Lock()
        self._warned_no_home = False

    # ---- actions ---------------------------------------------------------------------------
    def init_tracker(self, image_bgr, box, image_id) -> None:
        tw = self.app.tracker_worker
        if tw is None:
            self._emit(TrackerReady(False, "the runtime has no tracker configured"))
            return
        item = self.app.tracked.peek()
        self._init_after_seq = 0 if item is None else item.seq
        # The tracker worker initialises on its next head frame (the box came from `image_id`,
        # at most a planner round trip older; the tracker's first frame absorbs small motion).
        tw.request_init(box_xyxy=np.asarray(box, dtype=np.float32))

    def enable_controller(self) -> None:
        self._grasping = True
        self._lost_in_a_row = 0
        self._hand_ref, self._closed_since, self._z_low = None, None, np.inf
        self.app.loop.submit("enable")

    def disable_controller(self) -> None:
        self._grasping = False
        self.app.loop.submit("disable")

    def reset_arm(self, place: bool) -> None:
        self.disable_controller()
        if self.app.tracker_worker is not None:
            self.app.tracker_worker.request_reset()
        go_home = getattr(self.app, "go_home", None)
        if callable(go_home):
            go_home(place=place, on_done=lambda: self._emit(HomeReached()))
            return
        if not self._warned_no_home:
            log.warning("the runtime has no homing motion (App.go_home): the arm holds where it is between attempts")
            self._warned_no_home = True
        self._emit(HomeReached())

    def request_operator_box(self, image_bgr) -> None:
        self.app.publish_event({"source": "episode", "event": "operator box needed",
                                "hint": "send {\"cmd\": \"manual_bbox\", \"bbox\": [x1, y1, x2, y2]}"})

    def episode_ended(self, outcome: str, reason: str) -> None:
        self.app.publish_event({"source": "episode", "event": "episode ended", "outcome": outcome, "reason": reason})

    # ---- observations ----------------------------------------------------------------------
    def _emit(self, event) -> None:
        """Queue an observation for the next poll; any thread (the homing callback runs on its own)."""
        with self._lock:
            self._pending.append(event)

    def poll(self, now: float) -> list:
        with self._lock:
            events, self._pending = self._pending, []
        item = self.app.tracked.peek()
        if self._init_after_seq is not None and item is not None and item.seq > self._init_after_seq:
            lost = bool(getattr(item.value, "lost", False))
            events.append(TrackerReady(not lost, "tracker reports the target lost on its first frame" if lost else ""))
            self._init_after_seq = None
            self._last_seq = item.seq
        elif self._grasping and item is not None and item.seq > self._last_seq:
            self._last_seq = item.seq
            self._lost_in_a_row = self._lost_in_a_row + 1 if getattr(item.value, "lost", False) else 0
            if self._lost_in_a_row >= self.lost_frames_limit:
                events.append(TrackerLost(f"{self._lost_in_a_row} lost frames in a row"))
                self._lost_in_a_row = 0
        signal = self._grasp_signal(now)
        if signal is not None:
            events.append(signal)
        return events

    def _layout(self) -> tuple[int, int]:
        """(arm joints, all joints) of the app's joint space (upstream's 7 + 6 without a config)."""
        robot = getattr(getattr(self.app, "cfg", None), "robot", None)
        if robot is None:
            from runtime.joint_space import UPSTREAM_ARM_JOINTS, UPSTREAM_HAND_JOINTS

            return UPSTREAM_ARM_JOINTS, UPSTREAM_ARM_JOINTS + UPSTREAM_HAND_JOINTS
        return robot.n_arm, robot.n_joints

    def _grasp_signal(self, now: float) -> GraspSignal | None:
        """Closed = the hand joints moved `hand_closed_delta` (mean, normalised units) away from where
        they were when the controller took over (so it works whichever value means "open"); lifted =
        the wrist rose `lift_height_m` above its lowest point since closing (sim FK), or without a
        kinematic model the hand stayed closed for `closed_wait_s`."""
        bridge = self.app.bridge
        if bridge is None or not self._grasping:
            return None
        try:
            q = np.asarray(bridge.latest_state(0.5).positions, dtype=np.float64)
        except (StaleDataError, AttributeError):
            return None
        n_arm, n = self._layout()
        if n == n_arm or q.size < n or not np.all(np.isfinite(q)):
            return None  # no hand joints to see a grasp in, or a short / glitched state
        hand = q[n_arm:n]
        if self._hand_ref is None:
            self._hand_ref = hand.copy()
        closed = float(np.mean(np.abs(hand - self._hand_ref))) >= self.hand_closed_delta
        if not closed:
            self._closed_since, self._z_low = None, np.inf
            return GraspSignal(False, False)
        if self._closed_since is None:
            self._closed_since = now
        if self.app.scene is not None:
            from runtime.cameras.scene import arm_points

            z = float(arm_points(q)[0][2, 2])
            self._z_low = min(self._z_low, z)
            lifted = z - self._z_low >= self.lift_height_m
        else:
            lifted = now - self._closed_since >= self.closed_wait_s
        return GraspSignal(True, lifted)


def make_episode(app) -> EpisodeRunner:
    """Build the episode runner for `app` (called by App._build_episode). Starts nothing:
    App calls `start_threads()`, `start(prompt)`, `abort(reason)` and `stop()`."""
    cfg = app.cfg
    options = cfg.planner.options or {}
    head = cfg.cameras.head
    config = episode_config_from(options, (head.width, head.height))
    grasp = _section(options, "grasp")
    try:
        actuator = AppActuator(app, **grasp)
    except TypeError as exc:
        raise ConfigError(f"planner.options.grasp: {exc}") from exc
    planner = make_planner(cfg, app.clock)
    runner = EpisodeRunner(planner, actuator, app.head_frames, app.wrist_frames, app.clock, config,
                           on_event=app.publish_event)
    return runner
