"""`dexgrasp planner serve` (a real subprocess) and `dexgrasp planner ask` (in-process main())."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest
import zmq

from runtime.cli.main import main


def free_endpoint() -> str:
    with zmq.Context() as ctx:
        s = ctx.socket(zmq.ROUTER)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        s.close(0)
    return f"tcp://127.0.0.1:{port}"


def start_serve(*extra):
    endpoint = free_endpoint()
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli.main", "planner", "serve", "--bind", endpoint, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    deadline = time.monotonic() + 20.0
    lines = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            lines.append(line)
            if "serving" in line:
                return proc, endpoint
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {lines} {proc.stderr.read()}")


def stop_serve(proc) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    return out


@pytest.fixture
def head_png(tmp_path, head_image):
    path = tmp_path / "head.png"
    cv2.imwrite(str(path), head_image)
    return str(path)


def test_serve_local_and_ask_bbox(capsys, head_png):
    proc, endpoint = start_serve("--backend", "local")
    try:
        rc = main(["planner", "ask", "--connect", endpoint, "--task", "bbox", "--image", head_png,
                   "--prompt", "the red cube", "--timeout-s", "10"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        result = json.loads(out.out.strip().splitlines()[-1])
        x1, y1, x2, y2 = result["bbox"]
        assert abs(x1 - 100) <= 2 and abs(y1 - 200) <= 2 and abs(x2 - 151) <= 2 and abs(y2 - 251) <= 2
        assert result["label"] == "red cube" and result["image_size"] == [640, 480]
        rc = main(["planner", "ask", "--connect", endpoint, "--task", "bbox", "--image", head_png,
                   "--prompt", "the purple pyramid", "--timeout-s", "10"])
        err = capsys.readouterr().err
        assert rc == 1 and "invalid_reply" in err and "purple pyramid" in err
    finally:
        counters = stop_serve(proc)
    assert '"ok": 1' in counters


def test_serve_vlm_against_fake_openai_server(capsys, head_png, fake_vlm):
    fake_vlm.default = ("good", 'Here: {"bbox_2d": [10, 20, 60, 90], "label": "cube"}')
    proc, endpoint = start_serve("--vlm-url", fake_vlm.url, "--api-key-env", "PATH")
    try:
        rc = main(["planner", "ask", "--connect", endpoint, "--task", "bbox", "--image", head_png,
                   "--prompt", "the cube", "--timeout-s", "10"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert json.loads(out.out.strip().splitlines()[-1])["bbox"] == [10, 20, 60, 90]
    finally:
        stop_serve(proc)
    assert fake_vlm.requests[0]["model"] == "fake-vl"  # resolved from GET /models


def test_ask_unreachable_server_fails_clearly(capsys, head_png):
    endpoint = free_endpoint()
    rc = main(["planner", "ask", "--connect", endpoint, "--task", "complete", "--image", head_png,
               "--prompt", "clear the table", "--timeout-s", "1", "--connect-timeout-s", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and f"no planner server answered the handshake at {endpoint} within 1 s" in err
    assert "--connect-timeout-s" in err and "unreachable" in err


def test_ask_waits_for_a_slow_starting_server_then_a_flaky_vlm_answers(capsys, head_png, fake_vlm):
    # The incident: `planner ask --timeout-s ...` started while `planner serve` was still starting
    # on a loaded machine, against a stand-in failing every other call. Here the server binds 3 s
    # after the ask starts, longer than the request's whole 2.5 s budget: the budget starts at the
    # handshake, so the outcome no longer depends on start-up time. The first VLM call fails (500),
    # the retry answers.
    from runtime.planner.server import PlannerServer
    from runtime.planner.vlm_backend import VLMBackend
    from runtime.planner.vlm_http import OpenAIChatClient

    fake_vlm.default = ("alternate", 500, '{"bbox_2d": [10, 20, 60, 90], "label": "cube"}')
    endpoint = free_endpoint()
    started = {}

    def slow_start():
        time.sleep(3.0)
        started["server"] = PlannerServer(VLMBackend(OpenAIChatClient(fake_vlm.url, model="fake-vl")),
                                          endpoint).start()

    starter = threading.Thread(target=slow_start, name="slow-start")
    starter.start()
    try:
        rc = main(["planner", "ask", "--connect", endpoint, "--task", "bbox", "--image", head_png,
                   "--prompt", "the cube", "--timeout-s", "2.5", "--connect-timeout-s", "60"])
    finally:
        starter.join()
        if "server" in started:
            started["server"].stop()
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out.strip().splitlines()[-1])["bbox"] == [10, 20, 60, 90]
    assert fake_vlm.posts == 2  # HTTP 500, then the answer


@pytest.mark.parametrize("args, message", [
    (["--task", "verify", "--prompt", "x"], "--image2"),
    (["--task", "bbox"], "--prompt"),
])
def test_ask_argument_errors(capsys, head_png, args, message):
    rc = main(["planner", "ask", "--connect", "tcp://127.0.0.1:9", "--image", head_png, *args])
    assert rc == 2 and message in capsys.readouterr().err


def test_ask_missing_image_file(capsys, tmp_path):
    rc = main(["planner", "ask", "--connect", "tcp://127.0.0.1:9", "--task", "bbox",
               "--image", str(tmp_path / "nope.png"), "--prompt", "x"])
    assert rc == 2 and "cannot read image file" in capsys.readouterr().err


def test_serve_needs_vlm_url(capsys):
    rc = main(["planner", "serve", "--bind", "tcp://127.0.0.1:*"])
    assert rc == 2 and "--vlm-url is required" in capsys.readouterr().err


def test_keygen(tmp_path, capsys):
    assert main(["planner", "keygen", "--dir", str(tmp_path), "--name", "robot"]) == 0
    assert (tmp_path / "robot.key").exists() and (tmp_path / "robot.key_secret").exists()
    assert oct((tmp_path / "robot.key_secret").stat().st_mode)[-3:] == "600"


def test_serve_qwen25_frame_box_at_the_resized_edge(capsys, head_png, fake_vlm):
    # The model's 644x476 frame; the box touches its bottom-right corner.
    fake_vlm.default = ("good", '{"bbox_2d": [600, 400, 644, 476], "label": "bin"}')
    proc, endpoint = start_serve("--vlm-url", fake_vlm.url, "--model", "fake-vl", "--coords", "qwen2.5-vl")
    try:
        rc = main(["planner", "ask", "--connect", endpoint, "--task", "bbox", "--image", head_png,
                   "--prompt", "the bin", "--timeout-s", "10"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert json.loads(out.out.strip().splitlines()[-1])["bbox"] == [596, 403, 640, 480]
    finally:
        stop_serve(proc)


def test_serve_rejects_inverted_pixel_bounds(capsys):
    rc = main(["planner", "serve", "--bind", "tcp://127.0.0.1:*", "--vlm-url", "http://127.0.0.1:9/v1",
               "--model", "m", "--coords", "qwen2.5-vl", "--vlm-min-pixels", "5000", "--vlm-max-pixels", "4000"])
    assert rc == 2 and "--vlm-min-pixels (5000) exceeds --vlm-max-pixels (4000)" in capsys.readouterr().err


def test_ask_verify_against_vllm_with_its_default_image_limit(capsys, head_png, fake_vlm):
    fake_vlm.default = ("status", 400, None, b'{"object": "error", "message": "At most 1 image(s) may be '
                        b'provided in one request.", "type": "BadRequestError", "param": null, "code": 400}')
    proc, endpoint = start_serve("--vlm-url", fake_vlm.url, "--model", "fake-vl")
    try:
        rc = main(["planner", "ask", "--connect", endpoint, "--task", "verify", "--image", head_png,
                   "--image2", head_png, "--prompt", "the cube", "--timeout-s", "10"])
    finally:
        stop_serve(proc)
    err = capsys.readouterr().err
    assert rc == 1 and "verify failed (vlm_error)" in err
    assert "--limit-mm-per-prompt '{\"image\": 2}'" in err and "at most 1 image(s)" in err
    assert fake_vlm.posts == 1
