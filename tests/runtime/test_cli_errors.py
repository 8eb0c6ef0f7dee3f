"""Bad command-line values give a one-line error (argparse exit 2 or exit 1/2 from main), never a traceback.

Each case used to end in a traceback, a 30 s wait, a stray file or a minute-long stream.
"""

import importlib

import pytest

from runtime.cli.main import main
from runtime.errors import MissingExtraError, require

ASK = ["planner", "ask", "--task", "bbox", "--image", "x.png"]
SERVE = ["planner", "serve", "--bind", "tcp://127.0.0.1:5999", "--backend", "local"]
STREAM = ["bridge", "stream", "--emulator"]


@pytest.mark.parametrize("argv, option", [
    (["infer", "--model", "m", "--obs", "o.npz", "--output", "a.npz", "--seed", "-1"], "--seed"),
    ([*ASK, "--connect", "tcp://127.0.0.1:5557", "--timeout-s", "-1"], "--timeout-s"),
    ([*ASK, "--connect", "tcp://127.0.0.1:5557", "--timeout-s", "nan"], "--timeout-s"),
    ([*ASK, "--connect", "tcp://127.0.0.1:5557", "--timeout-s", "1e12"], "--timeout-s"),
    ([*ASK, "--connect", "garbage"], "--connect"),
    ([*ASK, "--connect", ""], "--connect"),
    ([*SERVE, "--workers", "-2"], "--workers"),
    ([*SERVE, "--queue", "-5"], "--queue"),
    ([*SERVE, "--max-message-mb", "-1"], "--max-message-mb"),
    ([*STREAM, "--amplitude", "5"], "--amplitude"),
    ([*STREAM, "--rate", "1e9"], "--rate"),
    ([*STREAM, "--duration", "inf"], "--duration"),
])
def test_bad_values_are_usage_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert option in last and "error" in last


def test_infer_output_in_missing_directory_fails_before_inference(tmp_path, capsys):
    # the model and obs do not exist: reaching them would give a different message
    rc = main(["infer", "--model", str(tmp_path / "nomodel"), "--obs", str(tmp_path / "noobs.npz"),
               "--output", str(tmp_path / "missing" / "a.npz"), "--seed", "0"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert "does not exist" in err and "missing" in err and "noobs" not in err


def test_missing_system_library_names_apt_package(monkeypatch):
    def fail(name):
        raise ImportError("libusb-1.0.so.0: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(MissingExtraError) as exc:
        require("pyrealsense2", "realsense", "RealSense cameras")
    msg = str(exc.value)
    assert "apt-get install libusb-1.0-0" in msg and "\n" not in msg


import numpy as np  # noqa: E402


class _SlowLinkBridge:
    """A bridge whose every write takes 10 ms of (fake) time: it cannot sustain the asked rate."""

    def __init__(self, write_s: float) -> None:
        from types import SimpleNamespace

        import numpy as np

        from runtime.clock import FakeClock

        self.clock = FakeClock(100.0)
        self.write_s = write_s
        self.sent = 0
        self.armed = False
        self.limits = SimpleNamespace(clip=lambda q: np.clip(q, -1.0, 1.0), lower=-np.ones(13), upper=np.ones(13),
                                      max_velocity=np.full(13, 0.1), max_acceleration=np.full(13, 1.0))
        self.commands = []
        self._state = SimpleNamespace(positions=np.zeros(13))

    def arm(self):
        self.armed = True

    def disarm(self):
        self.armed = False

    def latest_state(self, max_age_s=None):
        return self._state

    def send_targets(self, q):
        self.commands.append(np.array(q))
        self.sent += 1
        self.clock.advance(self.write_s)

    def counters(self):
        keys = ("states", "crc_errors", "resyncs", "timeouts", "reconnects", "commands_confirmed",
                "lost_rx_frames", "device_fault_codes")
        return {"commands_sent": self.sent, "rtt_ms": {}, **{k: 0 for k in keys}}


@pytest.mark.parametrize("write_s, expected_sent", [
    (0.010, None),   # 1000 Hz asked, 100 Hz possible: stops near 1.1 * duration + 0.5 s, not after 500 writes
    (0.0005, 500),   # a link that keeps up sends every command of the duration
])
def test_bridge_stream_is_bounded_in_time_not_cycles(write_s, expected_sent):
    from runtime.cli.bridge import stream_targets

    bridge = _SlowLinkBridge(write_s)
    t0 = bridge.clock.now()
    out = stream_targets(bridge, duration_s=0.5, rate_hz=1000.0, amplitude=0.01, progress=False)
    elapsed = bridge.clock.now() - t0
    assert not bridge.armed
    if expected_sent is None:
        assert elapsed <= 0.5 * 1.1 + 0.5 + 2 * write_s
        assert out["sent"] < 500 and out["sent"] == bridge.sent
    else:
        assert out["sent"] == expected_sent


def test_bridge_stream_goes_through_the_safety_filter():
    """--amplitude 0.2 at 1000 Hz asks for 0.63 rad/s; with a 0.1 rad/s, 1 rad/s^2 envelope every
    command stays within position, velocity and acceleration limits (it was sent unfiltered)."""
    from runtime.cli.bridge import stream_targets

    bridge = _SlowLinkBridge(0.0)
    out = stream_targets(bridge, duration_s=1.0, rate_hz=1000.0, amplitude=0.2, progress=False)
    q = np.asarray(bridge.commands)
    dt = 1e-3
    v = np.diff(np.vstack([np.zeros(13), q]), axis=0) / dt
    a = np.diff(np.vstack([np.zeros(13), v]), axis=0) / dt
    assert np.all(np.abs(q) <= 1.0)
    assert np.abs(v).max() <= 0.1 * (1 + 1e-9)
    assert np.abs(a).max() <= 1.0 * (1 + 1e-6)
    assert out["limited"]["velocity"] > 0 or out["limited"]["acceleration"] > 0
