"""A chunk from an inference already running when `home` was sent must not override the homing."""
import dataclasses

import numpy as np

from runtime.execution.chunk import TimedChunk

RATE = 200


def test_late_chunk_from_older_generation_is_dropped_and_home_is_reached(loop_sim):
    sim = loop_sim(latency_s=0.3)
    sim.run(0.1)
    home = np.zeros(13)
    home[0] = 0.8
    t_obs = sim.clock.now() - 0.05  # observed before home: an inference that was already running
    sim.loop.submit("home", target=list(home))
    sim.run(0.2)
    late = TimedChunk(np.full((64, 13), -0.5), t_obs=t_obs, t_start=sim.clock.now(), dt_s=0.05, seq=7,
                      t_ready=sim.clock.now())
    sim.chunks.put(dataclasses.replace(late), late.t_obs)
    sim.run(6.0)
    assert sim.loop.chunks_dropped_old_generation == 1
    assert sim.loop.report()["chunks_dropped_old_generation"] == 1
    assert sim.loop.homes_completed == 1
    cmds = sim.commands()
    np.testing.assert_allclose(cmds[-1][0], 0.8, atol=1e-3)  # not -0.5: the late chunk lost
    lim = sim.limits
    v = np.diff(cmds, axis=0) * RATE
    a = np.diff(v, axis=0) * RATE
    assert np.all(np.abs(v) <= lim.max_velocity + 1e-9)
    assert np.all(np.abs(a) <= lim.max_acceleration + 1e-6)
