"""A model trained on one action grid is refused by a loop that plays another (its chunks would run
faster or slower than demonstrated); models without a recorded grid are not checked."""

from __future__ import annotations

import json

import pytest

from runtime.config.components import check_action_rate, make_policy
from runtime.config.loading import load_config
from runtime.errors import ModelError


def _record_grid(model_dir, hz):
    path = model_dir / "manifest.json"
    data = json.loads(path.read_text())
    src = data.setdefault("source_checkpoint", {})
    src.setdefault("training", {})["action_rate_hz"] = hz
    path.write_text(json.dumps(data))


def test_other_grid_refused_with_both_rates(tiny_model_copy):
    _record_grid(tiny_model_copy, 10.0)
    with pytest.raises(ModelError) as err:
        check_action_rate(20.0, tiny_model_copy)
    msg = str(err.value)
    assert "10 Hz" in msg and "action_rate_hz is 20" in msg and "2.00x" in msg
    assert "\n" not in msg
    check_action_rate(10.0, tiny_model_copy)  # the grid it was trained on
    check_action_rate(10.05, tiny_model_copy)  # within 1 %


def test_no_recorded_grid_not_checked(tiny_model_copy):
    data = json.loads((tiny_model_copy / "manifest.json").read_text())
    assert "action_rate_hz" not in (data.get("source_checkpoint", {}).get("training") or {})
    check_action_rate(20.0, tiny_model_copy)
    check_action_rate(7.0, tiny_model_copy)


def test_make_policy_refuses_before_loading(tiny_model_copy):
    _record_grid(tiny_model_copy, 15.0)
    cfg = load_config("sim")
    assert cfg.control.action_rate_hz == 20
    with pytest.raises(ModelError, match="15 Hz action grid"):
        make_policy(cfg, tiny_model_copy)
