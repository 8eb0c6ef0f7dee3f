"""Every file in configs/ gets through `dexgrasp run` up to the point where hardware would be opened.

The schema alone is not enough: robot_example.yaml passed the schema test for months and then failed
in App._build_observers (`telemetry: {domain_id: 0}`), i.e. it never started. This test goes through
the CLI's own path (runtime.cli.main -> run.main -> load_config -> run_app -> App.start) and stops it
at the hardware boundaries: the serial port, the firmware emulator and the start of the device
threads (camera workers connect and the control process opens its bridge there). The exported
controller is a deployment artefact like the hardware (robot_example names /opt/...), so make_policy
hands back the fake policy after recording what it was asked for.
"""

import pytest

from runtime.config import CONFIGS_DIR

CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))


class HardwareReached(Exception):
    """Raised where the real run would open a device."""


@pytest.fixture
def stop_at_hardware(monkeypatch):
    from firmware_bridge.emulator import EmulatorProcess
    from firmware_bridge.link import SerialLink
    from runtime.app import App
    from runtime.config import components
    from runtime.execution.fakes import FakeChunkPolicy

    asked = {}

    def serial_open(self):
        raise HardwareReached(f"serial port {self.port}")

    def emulator_start(self, **kwargs):
        raise HardwareReached("firmware emulator")

    def start_threads(self):
        asked["built"] = {"bridge": self.cfg.bridge.kind, "cameras": len(self.camera_workers),
                          "policy_worker": self.policy_worker is not None, "loop": self.loop is not None}
        raise HardwareReached("device threads")

    def make_policy(cfg, model_dir=None):
        asked["policy"] = cfg.policy
        return FakeChunkPolicy(latency_s=0.1)

    def check_model(self):  # the manifest check before any device opens: the model is an artefact too
        asked["model_checked"] = self.cfg.policy.backend


    monkeypatch.setattr(SerialLink, "open", serial_open)
    monkeypatch.setattr(EmulatorProcess, "start", emulator_start)
    monkeypatch.setattr(App, "_start_threads", start_threads)
    monkeypatch.setattr(components, "make_policy", make_policy)
    monkeypatch.setattr(App, "_check_model", check_model)
    return asked


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_reaches_the_hardware_step(stop_at_hardware, path, capsys):
    import importlib.util

    from runtime.cli.main import main
    from runtime.config import load_config

    assert CONFIGS, "configs/ is empty"
    cfg = load_config(path)
    dds = bool(((cfg.telemetry or {}).get("dds") or {}).get("enabled"))
    if dds and importlib.util.find_spec("cyclonedds") is None:  # a robot config needs the dds extra
        assert main(["run", "--config", str(path), "--duration", "1", "--quiet"]) == 2
        assert "dexgraspvla-runtime[dds]" in capsys.readouterr().err
        return
    with pytest.raises(HardwareReached) as e:
        main(["run", "--config", str(path), "--duration", "1", "--quiet"])
    err = capsys.readouterr().err
    assert "error:" not in err, err
    assert str(e.value) in ("device threads", "firmware emulator") or str(e.value).startswith("serial port")
    assert stop_at_hardware.get("model_checked") == cfg.policy.backend  # checked before the hardware step
    built = stop_at_hardware.get("built")
    if built is not None:  # the control loop runs in its own process: everything else was built first
        assert built["cameras"] == 2 and built["policy_worker"] and built["loop"]
        assert stop_at_hardware["policy"] == cfg.policy
