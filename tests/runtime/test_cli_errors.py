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
