"""A stand-in runtime process for the two-process DDS test.

Runs a TelemetryNode whose submit callback drives a tiny state machine, publishes joint states at
~50 Hz (position[0] = the number of the sample, the rest = the state machine's phase code) and
reports its phase on the status topic; offers a 640x480 head frame (and wrist, mask) at ~10 Hz, so
the images go out at telemetry.dds.images.rate_hz and manual boxes have an image size to be checked against. Prints READY once the node is up; exits on stdin EOF.
"""

import sys
import threading

import numpy as np

from runtime.telemetry.config import DdsConfig
from runtime.telemetry.node import TelemetryNode

PHASES = {"idle": 0.0, "running": 1.0, "stopped": 2.0}


def main() -> None:
    domain_id = int(sys.argv[1])
    state = {"phase": "idle", "prompt": None, "armed": False}
    lock = threading.Lock()

    def submit(cmd: dict):
        with lock:
            if cmd["cmd"] == "start":
                if state["phase"] != "idle":
                    raise ValueError(f"cannot start while {state['phase']}")
                state.update(phase="running", prompt=cmd["prompt"])
            elif cmd["cmd"] == "stop":
                state["phase"] = "stopped"
            elif cmd["cmd"] == "clear":
                state.update(phase="idle", prompt=None, armed=False)
            elif cmd["cmd"] == "arm":
                state["armed"] = True
            elif cmd["cmd"] == "manual_bbox":
                state["bbox"] = cmd["bbox"]
            node.on_status(dict(state))

    node = TelemetryNode(DdsConfig(enabled=True, domain_id=domain_id, status_rate_hz=10.0), submit=submit)
    node.on_status(dict(state))
    node.start()
    done = threading.Event()

    head = np.tile(np.arange(640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    mask = np.zeros((480, 640), bool)
    mask[100:200, 200:300] = True

    def publish():
        i = 0
        while not done.wait(0.02):
            with lock:
                code = PHASES[state["phase"]]
            node.on_joint_state(np.array([float(i)] + [code] * 12))
            if i % 5 == 0:
                node.on_frames(head, head[:, ::-1], mask, None)
            i += 1

    th = threading.Thread(target=publish, name="fake-state", daemon=True)
    th.start()
    print("READY", flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    done.set()
    th.join(2.0)
    node.stop()


if __name__ == "__main__":
    main()
