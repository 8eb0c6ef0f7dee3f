"""Models for robots that are not upstream's 7 + 6 joints (issue 12): the architecture carries the
state width next to action_dim, the checkpoint cfg records it, `dexgrasp make-checkpoint --config`
sizes a model from a robot config's joint space, and the export writes that width into the
manifest. Upstream's 13-joint layout stays the default with upstream's parameter names and shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from export.checkpoint import load_checkpoint
from export.model.arch import TEST_ARCH, ControllerArch, get_preset
from export.model.policy import ControllerPolicy
from export.onnx_export import example_inputs, export_controller
from export.random_init import random_normalizer_stats
from export.upstream_cfg import arch_from_cfg, build_cfg
from runtime.cli.main import main
from runtime.errors import CheckpointError, ConfigError

ROBOT12 = {"arm_joint_names": [f"ur_{i}" for i in range(6)], "hand_joint_names": [f"finger_{i}" for i in range(6)],
           "arm_lower_rad": [-3.0] * 6, "arm_upper_rad": [1.0] * 6}


@pytest.fixture(scope="module")
def ckpt12(tmp_path_factory):
    """`dexgrasp make-checkpoint --config robot12.yaml` (tiny architecture)."""
    root = tmp_path_factory.mktemp("ckpt12")
    (root / "robot12.yaml").write_text(yaml.safe_dump({"robot": ROBOT12}))
    assert main(["make-checkpoint", "--preset", "_test_tiny", "--config", str(root / "robot12.yaml"),
                 "--output", str(root / "t12.ckpt"), "--seed", "2"]) == 0
    return root / "t12.ckpt"


def _shapes(arch: ControllerArch) -> dict:
    with torch.device("meta"):
        policy = ControllerPolicy(arch, random_normalizer_stats(0, arch))
    return {k: tuple(v.shape) for k, v in policy.state_dict().items()}


def test_upstreams_layout_is_the_default_and_another_changes_only_the_joint_facing_layers():
    for name in ("small", "dexgraspvla", "_test_tiny"):
        assert get_preset(name).state_dim == get_preset(name).action_dim == 13
        assert get_preset(name, 13) == get_preset(name)
    small, small12 = _shapes(get_preset("small")), _shapes(get_preset("small", 12))
    assert small["obs_encoder.state_net.0.weight"] == (256, 13)  # upstream's nn.Linear(13, 256)
    assert small.keys() == small12.keys()  # upstream's parameter names whatever the joint count
    changed = {k: small12[k] for k in small if small[k] != small12[k]}
    assert changed == {
        "obs_encoder.state_net.0.weight": (256, 12), "model.input_emb.weight": (384, 12),
        "model.head.weight": (12, 384), "model.head.bias": (12,),
        **{f"normalizer.params_dict.{group}.{stat}": (12,) for group in ("action", "right_state")
           for stat in ("scale", "offset", "input_stats.min", "input_stats.max", "input_stats.mean",
                        "input_stats.std")},
    }


def test_widths_that_are_not_joint_counts_are_refused():
    with pytest.raises(ConfigError, match=r"state_dim must be a positive integer \(joints\), got 0"):
        ControllerArch("dinov2_vits14", "dinov2_vits14", n_layer=4, n_head=8, state_dim=0)
    with pytest.raises(ConfigError, match=r"action_dim must be a positive integer \(joints\), got 12.5"):
        ControllerArch("dinov2_vits14", "dinov2_vits14", n_layer=4, n_head=8, action_dim=12.5)


def test_the_cfg_records_the_state_width_and_reads_it_back():
    arch = TEST_ARCH.with_joints(12)
    cfg = build_cfg(arch)
    assert cfg["policy"]["shape_meta"]["obs"]["right_state"]["shape"] == [12]
    assert cfg["policy"]["shape_meta"]["action"]["shape"] == [12]
    assert arch_from_cfg(cfg) == arch
    # upstream's format lets the two differ (its ObsEncoder reads 13 whatever the action shape)
    wide_state = ControllerArch("_test_tiny", "_test_tiny", n_layer=2, n_head=8, action_dim=7)
    assert arch_from_cfg(build_cfg(wide_state)) == wide_state and wide_state.joints is None
    del cfg["policy"]["shape_meta"]["obs"]["right_state"]  # a cfg without the field: upstream's 13
    assert arch_from_cfg(cfg).state_dim == 13
    for bad in ([12, 2], [0], ["12"]):
        cfg["policy"]["shape_meta"]["obs"]["right_state"] = {"shape": bad}
        with pytest.raises(CheckpointError, match=r"shape_meta\.obs\.right_state\.shape"):
            arch_from_cfg(cfg)


def test_make_checkpoint_config_sizes_the_model_for_the_robots_joint_space(ckpt12):
    loaded = load_checkpoint(ckpt12)
    assert loaded.arch == get_preset("_test_tiny", 12) and loaded.arch.joints == 12
    assert loaded.policy.obs_encoder.state_net[0].in_features == 12
    scale = loaded.policy.normalizer.params_dict["action"]["scale"].numpy()
    offset = loaded.policy.normalizer.params_dict["action"]["offset"].numpy()
    lo, hi = (-1 - offset) / scale, (1 - offset) / scale  # the action range the normalizer maps [-1, 1] to
    assert np.all(lo[:6] > -1) and np.all(hi[:6] < 1)  # 6 arm joints in upstream's [-1, 1]
    assert np.all(lo[6:] >= 0) and np.all(hi[6:] > 0.9)  # 6 hand joints: open .. closed


def test_a_12_joint_model_exports_with_its_width_and_matches_the_pytorch_reference(ckpt12, tmp_path):
    from runtime.controller import Controller

    loaded = load_checkpoint(ckpt12)
    manifest = export_controller(loaded, tmp_path / "m", progress=False)
    assert manifest.action_dim == 12 and manifest.arch["state_dim"] == 12
    assert manifest.graph("encoder").input("right_state").shape == [1, 1, 12]
    obs = example_inputs(loaded.arch, seed=5)
    assert obs["right_state"].shape == (1, 1, 12)
    noise = torch.randn(1, 64, 12, generator=torch.Generator().manual_seed(3))
    reference = loaded.policy.predict_action(obs, noise).numpy()[0]
    controller = Controller.from_dir(tmp_path / "m", threads=1)
    try:
        action = controller.predict({k: v.numpy() for k, v in obs.items()}, noise=noise.numpy())
    finally:
        controller.close()
    assert action.shape == (64, 12)
    value_range = float(reference.max() - reference.min())
    assert value_range > 0.1 and float(np.abs(action - reference).max()) <= 1e-3 * value_range
    # the state reaches the actions: another joint state, another chunk
    other = dict(obs, right_state=-obs["right_state"])
    assert np.abs(loaded.policy.predict_action(other, noise).numpy()[0] - reference).max() > 1e-4


def test_a_plain_state_dict_takes_its_joint_widths_from_the_weights(ckpt12, tmp_path):
    import dill

    payload = torch.load(ckpt12, map_location="cpu", pickle_module=dill, weights_only=False)
    plain = tmp_path / "plain.pth"
    torch.save(payload["state_dicts"]["model"], plain)
    loaded = load_checkpoint(plain, preset="_test_tiny")
    assert (loaded.arch.action_dim, loaded.arch.state_dim) == (12, 12) and loaded.weights == "state_dict"


def test_make_checkpoint_with_a_bad_config_is_one_line(tmp_path, capsys):
    rc = main(["make-checkpoint", "--preset", "_test_tiny", "--config", str(tmp_path / "nope.yaml"),
               "--output", str(tmp_path / "x.ckpt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.yaml" in err, err
    assert not (tmp_path / "x.ckpt").exists()
