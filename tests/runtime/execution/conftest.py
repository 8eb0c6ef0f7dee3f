"""A deterministic simulation of the runtime's threads on a FakeClock, stepped cycle by cycle.

The control loop runs its real `step()`; the camera produces frames every 1/30 s; the policy worker
runs its real `serve_once()` when the loop requests a chunk, and the chunk is delivered after a
simulated inference latency (so the loop keeps cycling while "inference" runs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runtime.clock import FakeClock
from runtime.config import config_from_dict
from runtime.execution.executor import ChunkExecutor
from runtime.execution.fakes import FakeBridge, FakeChunkPolicy, FakeFramePair
from runtime.execution.loop import ControlLoop
from runtime.execution.requests import ChunkRequests
from runtime.execution.safety import JointLimits, SafetyFilter
from runtime.mailbox import Mailbox
from runtime.workers.policy import PolicyWorker


class LoopSim:
    def __init__(self, latency_s=0.5, overrides=None, goal=None):
        self.cfg = config_from_dict(overrides or {}, "test")
        self.clock = FakeClock(100.0)
        cfg = self.cfg
        self.limits = JointLimits.from_config(cfg.robot, cfg.safety)
        self.bridge = FakeBridge(13, self.clock, start=np.zeros(13), lower=self.limits.lower, upper=self.limits.upper)
        self.head, self.wrist = Mailbox("head", self.clock), Mailbox("wrist", self.clock)
        self.frames = FakeFramePair(self.head, self.wrist, self.clock)
        self.policy = FakeChunkPolicy(goal=goal)
        self.latency_s = latency_s
        self.requests = ChunkRequests()
        self.chunks = Mailbox("chunks", self.clock)
        self._worker_out = Mailbox("worker-out", self.clock)
        self.worker = PolicyWorker(
            self.policy, self.requests, self.head, self.wrist,
            state_fn=lambda: self.bridge.latest_state(0.05).positions, chunks_out=self._worker_out,
            arm_lower=np.array(cfg.robot.arm_lower_rad), arm_upper=np.array(cfg.robot.arm_upper_rad),
            action_dt_s=1 / cfg.control.action_rate_hz,
            max_observation_age_s=cfg.safety.max_observation_age_ms / 1e3, clock=self.clock, require_mask=False,
        )
        self.loop = ControlLoop(
            self.bridge, ChunkExecutor.from_config(cfg), SafetyFilter(self.limits, 1 / cfg.control.rate_hz),
            self.chunks, self.requests, cfg.control.rate_hz, self.clock,
            max_state_age_s=cfg.safety.max_state_age_ms / 1e3,
            max_perception_age_s=cfg.safety.max_perception_age_ms / 1e3,
            perception_age_s=self.perception_age, auto_rearm=cfg.safety.auto_rearm,
        )
        self._pending = None
        self._next_frame = self.clock.now()
        self.sent = []  # (t, command or None)
        self.states = []

    def perception_age(self, now):
        item = self.head.peek()
        return np.inf if item is None else now - item.t_capture

    def cycle(self):
        tick = self.loop.rate.sleep()
        now = self.clock.now()
        if now >= self._next_frame:
            self.frames.capture()
            self._next_frame += 1 / 30
        if self._pending is not None and now >= self._pending[0]:
            self.chunks.put(self._pending[1], self._pending[1].t_obs)
            self._pending = None
            self.requests.done()
        cmd = self.loop.step(now, tick.deadline + self.loop.period_s)
        self.sent.append((now, cmd))
        self.states.append(self.loop.hold_reason)
        if self.requests.in_flight and self._pending is None and self.requests.take(0):
            chunk = self.worker.serve_once()
            if chunk is None:
                self.requests.done()
            else:
                lat = self.latency_s * self.policy.latency_scale
                self._pending = (now + lat, dataclasses.replace(chunk, t_ready=now + lat))

    def run(self, seconds):
        n = int(round(seconds * self.loop.rate.hz))
        for _ in range(n):
            self.cycle()

    def commands(self):
        return np.array([c for _, c in self.sent if c is not None])


@pytest.fixture
def loop_sim():
    return LoopSim
