from pathlib import Path

import pytest

from runtime.config import CONFIGS_DIR, config_from_dict, load_config, preset_names
from runtime.errors import ConfigError


def test_shipped_configs_load():
    assert {"sim", "robot_example"} <= set(preset_names())
    sim = load_config(CONFIGS_DIR / "sim.yaml")
    assert sim.control.rate_hz == 200 and sim.control.action_rate_hz == 20
    assert sim.bridge.kind == "emulator" and sim.cameras.kind == "synthetic"
    robot = load_config("robot_example")
    assert robot.bridge.kind == "serial" and robot.policy.backend == "onnxruntime"
    assert robot.policy.providers[0] == "TensorrtExecutionProvider"
    assert robot.telemetry == {"dds": {"enabled": True, "domain_id": 0, "insecure_commands": True}}


def test_bad_value_names_file_field_and_value(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("control:\n  rate_hz: -5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: control.rate_hz: must be > 0, got -5"


def test_unknown_key_did_you_mean(tmp_path: Path):
    p = tmp_path / "typo.yaml"
    p.write_text("safety:\n  max_velocity_arm_rad: 1.0\n")
    with pytest.raises(ConfigError, match=r"safety.max_velocity_arm_rad: unknown key; did you mean 'max_velocity_arm_rad_s'\?"):
        load_config(p)


def test_unknown_section_and_wrong_type():
    with pytest.raises(ConfigError, match=r"x.yaml: contol: unknown key; did you mean 'control'"):
        config_from_dict({"contol": {}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"execution.blend: must be one of .*got 'avg'"):
        config_from_dict({"execution": {"blend": "avg"}}, "x.yaml")
    with pytest.raises(ConfigError, match="rate_hz: input should be a valid number.*got 'fast'"):
        config_from_dict({"control": {"rate_hz": "fast"}}, "x.yaml")


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="action_rate_hz .* must not exceed rate_hz"):
        config_from_dict({"control": {"rate_hz": 10, "action_rate_hz": 20}})
    with pytest.raises(ConfigError, match="needs bridge.port"):
        config_from_dict({"bridge": {"kind": "serial"}})
    with pytest.raises(ConfigError, match="arm_lower_rad needs 7 values, got 2"):
        config_from_dict({"robot": {"arm_lower_rad": [0, 1]}})
    with pytest.raises(ConfigError, match="x2 > x1"):
        config_from_dict({"tracker": {"manual_box_xyxy": [10, 10, 5, 20]}})


def test_multiple_errors_reported_together():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"control": {"rate_hz": 0}, "safety": {"max_state_age_ms": -1}}, "m.yaml")
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("m.yaml: ") for line in lines)


def test_preset_did_you_mean_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="did you mean 'sim'"):
        load_config("simm")
    p = tmp_path / "broken.yaml"
    p.write_text("control: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)


def test_overrides_merge_deeply():
    cfg = load_config("sim", overrides={"control": {"rate_hz": 100}})
    assert cfg.control.rate_hz == 100 and cfg.control.action_rate_hz == 20


def test_model_cache_needs_torch_only_to_make_a_model(tmp_path, monkeypatch):
    import importlib.util

    from runtime.config import models
    from runtime.errors import MissingExtraError, ModelError

    monkeypatch.setenv("DEXGRASP_CACHE_DIR", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"needs PyTorch.*\[export\].*policy.model_dir"):
        models.ensure_model("small", 0)
    # an existing cached model is used without torch
    cached = models.cached_model_dir("small", 0)
    cached.mkdir(parents=True)
    (cached / "manifest.json").write_text("{}")
    assert models.ensure_model("small", 0) == cached
    cfg = config_from_dict({"policy": {"model_dir": str(tmp_path / "nope")}})
    with pytest.raises(ModelError, match="not an exported controller"):
        models.resolve_model_dir(cfg.policy)


def test_cutie_tracker_without_model_dir_names_the_field():
    from runtime.config.components import make_tracker

    cfg = load_config(CONFIGS_DIR / "sim.yaml", {"tracker": {"kind": "cutie", "options": {}}})
    with pytest.raises(ConfigError, match="tracker.options.model_dir"):
        make_tracker(cfg)


def test_unknown_tracker_kind_is_rejected_with_choices():
    with pytest.raises(ConfigError, match="tracker.kind"):
        load_config(CONFIGS_DIR / "sim.yaml", {"tracker": {"kind": "sam3"}})
