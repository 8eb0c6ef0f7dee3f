"""A config either means exactly what it says or is refused at load with one line naming the problem.

Duplicate YAML keys, empty files, unbounded safety envelopes, unknown option keys and a real-hardware
config without a home pose (or with automatic re-arming) used to load silently.
"""

from pathlib import Path

import pytest

from runtime.config import CONFIGS_DIR, config_from_dict, load_config
from runtime.config.schema import SAFETY_CAPS
from runtime.errors import ConfigError

HOME = [0.0, -0.3, 0.0, -1.2, 0.0, 1.0, 0.0] + [0.0] * 6
SERIAL = {"kind": "serial", "port": "/dev/ttyACM0"}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


# ---- YAML shape ----------------------------------------------------------------------------------

def test_duplicate_top_level_key_is_refused_naming_key_and_lines(tmp_path):
    p = write(tmp_path, "safety:\n  max_velocity_arm_rad_s: 0.5\ncontrol:\n  rate_hz: 100\nsafety:\n  auto_rearm: false\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg == f"{p}: line 5: duplicate key 'safety' (first at line 1); the second would replace the first"


def test_duplicate_nested_key_is_refused(tmp_path):
    p = write(tmp_path, "safety:\n  max_velocity_arm_rad_s: 0.5\n  max_velocity_arm_rad_s: 2.5\n")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'max_velocity_arm_rad_s' \(first at line 2\)"):
        load_config(p)
    p = write(tmp_path, "cameras:\n  head: {fps: 30, fps: 15}\n")
    with pytest.raises(ConfigError, match=r"line 2: duplicate key 'fps'"):
        load_config(p)
    # a YAML merge key is an explicit override, not a duplicate
    p.write_text("cameras:\n  head: &cam {fps: 30, width: 320}\n  wrist:\n    <<: *cam\n    fps: 15\n")
    cfg = load_config(p)
    assert cfg.cameras.wrist.fps == 15 and cfg.cameras.wrist.width == 320


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_not_a_sim_config(tmp_path, text):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"c.yaml: the file is empty"):
        load_config(p)


# ---- the safety envelope -------------------------------------------------------------------------

@pytest.mark.parametrize("field", sorted(SAFETY_CAPS))
@pytest.mark.parametrize("bad", [1e9, float("inf")])  # NaN was refused already (gt=0)
def test_safety_values_must_be_finite_and_under_their_cap(field, bad):
    with pytest.raises(ConfigError, match=rf"^x.yaml: safety.{field}: must be"):
        config_from_dict({"safety": {field: bad}}, "x.yaml")


@pytest.mark.parametrize("field", sorted(SAFETY_CAPS))
def test_safety_cap_is_inclusive_and_just_above_is_refused(field):
    cap = SAFETY_CAPS[field]
    assert getattr(config_from_dict({"safety": {field: cap}}).safety, field) == cap
    with pytest.raises(ConfigError, match=rf"safety.{field}: must be <= {cap:g}, got {cap * 1.01!r}"):
        config_from_dict({"safety": {field: cap * 1.01}})


def test_inf_in_yaml_is_refused(tmp_path):
    p = write(tmp_path, "safety:\n  max_acceleration_arm_rad_s2: .inf\n")
    with pytest.raises(ConfigError, match="safety.max_acceleration_arm_rad_s2: must be"):
        load_config(p)


@pytest.mark.parametrize("robot, what", [
    ({"arm_upper_rad": [float("inf")] + [3.1] * 6}, "arm_upper_rad"),
    ({"arm_lower_rad": [-100.0] + [-3.1] * 6}, "arm_lower_rad"),
    ({"arm_upper_rad": [100.0] + [3.1] * 6}, "arm_upper_rad"),
    ({"hand_upper": [1.0] * 5 + [float("nan")]}, "hand_upper"),
    ({"hand_lower": [-0.5] + [0.0] * 5}, "hand_lower"),
    ({"home_positions": [float("nan")] + [0.0] * 12}, "home_positions"),
])
def test_joint_limits_and_home_must_be_finite_and_bounded(robot, what):
    with pytest.raises(ConfigError, match=rf"robot.{what}: .*must be"):
        config_from_dict({"robot": robot}, "x.yaml")


def test_home_pose_must_lie_within_the_joint_limits():
    home = list(HOME)
    home[3] = -2.5  # arm_joint_4 lower limit is -2.355
    with pytest.raises(ConfigError, match=r"robot.home_positions: arm_joint_4 = -2.5 is outside its limits "
                                          r"\[-2.355, 2.355\]"):
        config_from_dict({"robot": {"home_positions": home}})
    home = list(HOME)
    home[12] = 1.5
    with pytest.raises(ConfigError, match="hand_joint_6 = 1.5 is outside"):
        config_from_dict({"robot": {"home_positions": home}})


# ---- real hardware -------------------------------------------------------------------------------

def test_serial_bridge_needs_an_explicit_home_pose():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"bridge": SERIAL}, "r.yaml")
    assert str(e.value).startswith("r.yaml: robot.home_positions: bridge.kind 'serial' drives real hardware")
    assert "\n" not in str(e.value)
    cfg = config_from_dict({"bridge": SERIAL, "robot": {"home_positions": HOME}})
    assert cfg.robot.home_positions == HOME
    # naming the zero pose explicitly is a decision, and allowed
    config_from_dict({"bridge": SERIAL, "robot": {"home_positions": [0.0] * 13}})


def test_serial_bridge_refuses_auto_rearm():
    with pytest.raises(ConfigError, match=r"r.yaml: safety.auto_rearm: .*sim-only.*bridge.kind 'serial'"):
        config_from_dict({"bridge": SERIAL, "robot": {"home_positions": HOME}, "safety": {"auto_rearm": True}},
                         "r.yaml")
    for kind in ("emulator", "fake"):
        assert config_from_dict({"bridge": {"kind": kind}, "safety": {"auto_rearm": True}}).safety.auto_rearm


# ---- telemetry / recording / component options ---------------------------------------------------

def test_telemetry_section_is_validated_at_load():
    with pytest.raises(ConfigError, match=r"^x.yaml: telemetry.domain_id: unknown key; known keys: dds$"):
        config_from_dict({"telemetry": {"domain_id": 0}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"telemetry.dds.domian_id: unknown key; did you mean 'domain_id'\?"):
        config_from_dict({"telemetry": {"dds": {"domian_id": 0}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"telemetry.dds.domain_id: expected an integer in \[0, 232\]"):
        config_from_dict({"telemetry": {"dds": {"domain_id": 999}}}, "x.yaml")
    cfg = config_from_dict({"telemetry": {"dds": {"enabled": False, "domain_id": 3}}})
    assert cfg.telemetry == {"dds": {"enabled": False, "domain_id": 3}}  # handed on unchanged


def test_recording_section_is_validated_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"recording.vidoe: unknown key; did you mean 'video'\?"):
        config_from_dict({"recording": {"dir": str(tmp_path), "vidoe": False}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"recording.compressor: expected one of"):
        config_from_dict({"recording": {"dir": str(tmp_path), "compressor": "gzip"}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"recording.dir: a directory to record into is required"):
        config_from_dict({"recording": {"video": False}}, "x.yaml")
    # `dexgrasp run --record DIR` supplies the directory as an override before validation
    cfg = load_config("sim", {"recording": {"dir": str(tmp_path)}})
    assert cfg.recording == {"dir": str(tmp_path)}


def test_unknown_bridge_option_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"bridge.options.emulatr: unknown key; did you mean 'emulator'\?"):
        config_from_dict({"bridge": {"options": {"emulatr": {}}}}, "x.yaml")
    # The emulator runs on its own compiled limit table: the old host-side margin is gone, not ignored.
    with pytest.raises(ConfigError, match=r"bridge.options.firmware_limit_margin: unknown key"):
        config_from_dict({"bridge": {"options": {"firmware_limit_margin": 1.25}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"bridge.options.emulator_start.state_rate: unknown key; "
                                          r"did you mean 'state_rate_hz'\?"):
        config_from_dict({"bridge": {"options": {"emulator_start": {"state_rate": 50}}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"bridge.options.host.heartbeat: unknown key; did you mean 'heartbeat_hz'"):
        config_from_dict({"bridge": {"options": {"host": {"heartbeat": 5}}}}, "x.yaml")


def test_accepted_never_drops_a_keyword_silently():
    from runtime.config.components import _accepted

    def start(limits=None, state_rate_hz=50.0):
        return None

    assert _accepted(start, {"state_rate_hz": 10}, "bridge.options.emulator_start") == {"state_rate_hz": 10}
    with pytest.raises(ConfigError, match=r"^bridge.options.emulator_start.state_rate_hzz: unknown key; "
                                          r"did you mean 'state_rate_hz'\?$"):
        _accepted(start, {"state_rate_hzz": 10}, "bridge.options.emulator_start")


def test_shipped_robot_example_is_consistent():
    text = (CONFIGS_DIR / "robot_example.yaml").read_text()
    assert "--prompt" not in text and 'dexgrasp ctl start "' in text
    cfg = load_config("robot_example")
    assert cfg.bridge.kind == "serial" and "home_positions" in cfg.robot.model_fields_set
    assert not cfg.safety.auto_rearm
    assert not (cfg.policy.backend == "tensorrt" and cfg.policy.providers)  # providers are ORT-only


def test_tracker_options_are_checked_at_load_against_the_chosen_tracker():
    with pytest.raises(ConfigError, match=r"^x.yaml: tracker.options.prob_treshold: unknown key; "
                                          r"did you mean 'prob_threshold'\?$"):
        config_from_dict({"tracker": {"kind": "classical", "options": {"prob_treshold": 0.5}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"tracker.options.model: unknown key; did you mean 'model_dir'\?"):
        config_from_dict({"tracker": {"kind": "cutie", "options": {"model": "/m"}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"tracker.options: tracker.kind 'none' takes no options"):
        config_from_dict({"tracker": {"kind": "none", "options": {"min_area_px": 3}}}, "x.yaml")
    assert config_from_dict({"tracker": {"options": {"prob_threshold": 0.6}}}).tracker.options == {"prob_threshold": 0.6}


def test_planner_options_are_checked_at_load():
    with pytest.raises(ConfigError, match=r"^x.yaml: planner.options.episod: unknown key; did you mean 'episode'\?$"):
        config_from_dict({"planner": {"options": {"episod": {}}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"planner.options.client.heartbeat_s: unknown key; "
                                          r"did you mean 'heartbeat_period_s'\?"):
        config_from_dict({"planner": {"options": {"client": {"heartbeat_s": 1}}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"planner.options.grasp.lift_height: unknown key; did you mean 'lift_height_m'"):
        config_from_dict({"planner": {"options": {"grasp": {"lift_height": 0.1}}}}, "x.yaml")
    ok = {"episode": {"planner_timeout_s": 30}, "grasp": {"lift_height_m": 0.1}, "client": {"heartbeat_period_s": 1.0}}
    assert config_from_dict({"planner": {"options": ok}}).planner.options == ok
