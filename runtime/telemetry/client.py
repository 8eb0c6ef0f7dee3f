"""The operator side of the DDS link: send commands, read status (used by `dexgrasp ctl` and tests).

Every wait takes a timeout and returns None/raises DeviceNotConnectedError when it expires, so a
missing runtime shows as a clear message instead of a hang.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import uuid

from runtime.errors import DeviceNotConnectedError, require
from runtime.telemetry import qos
from runtime.telemetry.config import DdsConfig

POLL_S = 0.02


class DdsClient:
    """A participant with a command writer and a status reader (transient-local: the latest
    status arrives even if the runtime published it before we joined).

    Replay protection (runtime/telemetry/replay.py): every command carries this client's random
    `sender` id, a `seq` that grows with each command, and the runtime's `session` nonce, read from
    its status; the runtime refuses duplicates, older sequence numbers and other runs' commands."""

    def __init__(self, cfg: DdsConfig) -> None:
        require("cyclonedds", "dds", "dexgrasp ctl")
        from cyclonedds.pub import DataWriter
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        from runtime.telemetry.types import JointState_, String_

        self.cfg = cfg
        self._String = String_
        self._dp = dp = qos.participant(cfg)
        self._w_cmd = DataWriter(dp, Topic(dp, qos.TOPIC_COMMAND, String_, qos=qos.command_qos()), qos=qos.command_qos())
        self._r_status = DataReader(dp, Topic(dp, qos.TOPIC_STATUS, String_, qos=qos.status_qos()), qos=qos.status_qos())
        self._t_js = Topic(dp, qos.TOPIC_JOINT_STATES, JointState_, qos=qos.telemetry_qos())
        self._t_jc = Topic(dp, qos.TOPIC_JOINT_COMMANDS, JointState_, qos=qos.telemetry_qos())
        self._DataReader = DataReader
        self._Topic = Topic
        self._image_topics: dict = {}
        self._latest: dict | None = None
        self._history: list[dict] = []
        self._lock = threading.Lock()
        self.sender = secrets.token_hex(8)
        self._seq = itertools.count(1)

    def joint_reader(self, commands: bool = False):
        """A best-effort reader of rt/dexgrasp/joint_states (or joint_commands)."""
        return self._DataReader(self._dp, self._t_jc if commands else self._t_js, qos=qos.telemetry_qos())

    def image_reader(self, camera: str = "head"):
        """A best-effort reader of rt/dexgrasp/<camera>/image/compressed (head, wrist or mask)."""
        from runtime.telemetry.types import CompressedImage_

        topic = self._image_topics.get(camera)
        if topic is None:
            topic = self._image_topics[camera] = self._Topic(self._dp, qos.image_topic(camera), CompressedImage_,
                                                             qos=qos.image_qos())
        return self._DataReader(self._dp, topic, qos=qos.image_qos())

    def diagnostics_reader(self):
        """A reader of rt/diagnostics (transient-local: the latest array arrives at once)."""
        from runtime.telemetry.types import DiagnosticArray_

        topic = self._Topic(self._dp, qos.TOPIC_DIAGNOSTICS, DiagnosticArray_, qos=qos.diagnostics_qos())
        return self._DataReader(self._dp, topic, qos=qos.diagnostics_qos())

    def latest_image(self, camera: str, timeout_s: float):
        """The next CompressedImage on the camera's topic (blocks <= timeout_s), or None."""
        from runtime.telemetry.types import CompressedImage_

        reader = self.image_reader(camera)
        deadline = time.monotonic() + timeout_s
        while True:
            got = [s for s in reader.take(N=8) if isinstance(s, CompressedImage_)]
            if got:
                return got[-1]
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def wait_for_runtime(self, timeout_s: float) -> bool:
        """True once a runtime's command reader has matched our writer (blocks <= timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._w_cmd.get_matched_subscriptions():
                return True
            time.sleep(POLL_S)
        return False

    def send_raw(self, text: str) -> None:
        """Publish `text` as-is on rt/dexgrasp/command (no validation: tests use it for bad input)."""
        self._w_cmd.write(self._String(data=text))

    def runtime_session(self, timeout_s: float) -> str | None:
        """The runtime's session nonce from its latest status (waits <= timeout_s), or None."""
        doc = self.latest_status(timeout_s)
        return doc.get("session") if isinstance(doc, dict) else None

    def send(self, cmd: str, session_timeout_s: float = 5.0, **fields) -> str:
        """Publish {"cmd": cmd, **fields, "id", "sender", "seq", "session"}; returns the id to match
        the result. Waits up to session_timeout_s for the runtime's status (its session); a `stop`
        goes out without one rather than wait (a protective stop needs no replay protection)."""
        cmd_id = fields.pop("id", None) or uuid.uuid4().hex[:12]
        doc = {"cmd": cmd, **fields, "id": cmd_id, "sender": self.sender, "seq": next(self._seq)}
        session = self.runtime_session(0.0 if cmd == "stop" else session_timeout_s)
        if session is None and cmd != "stop":
            raise DeviceNotConnectedError(
                f"no status from a runtime on {qos.TOPIC_STATUS} within {session_timeout_s:.1f} s "
                f"(domain {self.cfg.domain_id}): its session is needed to send '{cmd}'"
            )
        if session is not None:
            doc["session"] = session
        self.send_raw(json.dumps(doc))
        return cmd_id

    def poll_status(self) -> list[dict]:
        """Status documents received since the last poll (oldest first); never blocks."""
        out = []
        for sample in self._r_status.take(N=64):
            if not sample.sample_info.valid_data:
                continue
            try:
                out.append(json.loads(sample.data))
            except json.JSONDecodeError:
                continue
        if out:
            with self._lock:
                self._latest = out[-1]
                self._history = (self._history + out)[-256:]
        return out

    def latest_status(self, timeout_s: float) -> dict | None:
        """The newest status, waiting up to timeout_s for one to arrive; None if none came."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll_status()
            with self._lock:
                if self._latest is not None:
                    return self._latest
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def wait_result(self, cmd_id: str, timeout_s: float) -> dict:
        """The runtime's result entry {"id","cmd","result","reason"} for cmd_id (blocks <= timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.poll_status()
            with self._lock:
                for doc in reversed(self._history):
                    for entry in doc.get("command_results", []):
                        if entry.get("id") == cmd_id:
                            return entry
            if time.monotonic() >= deadline:
                raise DeviceNotConnectedError(
                    f"no result for command {cmd_id} on {qos.TOPIC_STATUS} within {timeout_s:.1f} s "
                    f"(domain {self.cfg.domain_id}): is the runtime running with telemetry.dds.enabled?"
                )
            time.sleep(POLL_S)

    def close(self) -> None:
        self._w_cmd = self._r_status = self._t_js = self._t_jc = None
        self._dp = None

    def __enter__(self) -> DdsClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
