"""Per-graph tracker precision: the config/CLI forms, the measured recipe, and one-line errors for
unknown graphs, precisions a backend cannot run and a missing openvino. No model needed."""

from __future__ import annotations

import importlib.util

import pytest

from runtime.config.loading import config_from_dict
from runtime.errors import ConfigError
from runtime.tracking.learned import precision as gp

CUTIE_ONLY = gp.CUTIE_GRAPHS  # an export without SAM


def test_cli_form_parses_recipes_and_per_graph_mappings():
    assert gp.parse("bf16") == "bf16" and gp.parse(" fp32 ") == "fp32"
    assert gp.parse("cutie_encode_mask=bf16, cutie_segment=fp32") == {"cutie_encode_mask": "bf16",
                                                                       "cutie_segment": "fp32"}
    with pytest.raises(ConfigError, match="'cutie_segment' is not graph=precision"):
        gp.parse("cutie_encode_mask=bf16,cutie_segment")
    with pytest.raises(ConfigError, match="given twice"):
        gp.parse("cutie_segment=bf16,cutie_segment=fp32")


def test_fp32_and_the_recipe_resolve_over_the_graphs_of_the_export():
    assert gp.resolve("fp32", "onnxruntime", CUTIE_ONLY) == dict.fromkeys(CUTIE_ONLY, "fp32")
    recipe = gp.resolve("bf16", "openvino", CUTIE_ONLY, check_installed=False)
    assert set(recipe) == set(CUTIE_ONLY)  # SAM graphs only where the export has them
    assert recipe == {g: gp.BF16_RECIPE[g] for g in CUTIE_ONLY}
    # the recipe is a split: the measured graphs that break the masks stay fp32
    assert "fp32" in recipe.values() and gp.reduced(recipe)
    assert gp.resolve("bf16", "openvino", gp.GRAPHS, check_installed=False)["sam_image_encoder"] == "fp32"


def test_explicit_mapping_leaves_unnamed_graphs_fp32_and_has_a_canonical_key():
    got = gp.resolve({"cutie_segment": "bf16"}, "openvino", CUTIE_ONLY, check_installed=False)
    assert got == {"cutie_encode_image": "fp32", "cutie_encode_mask": "fp32", "cutie_segment": "bf16"}
    assert gp.key(got) == "cutie_segment=bf16"
    both = gp.resolve({"cutie_segment": "bf16", "cutie_encode_image": "bf16"}, "openvino", CUTIE_ONLY,
                      check_installed=False)
    assert gp.key(both) == "cutie_encode_image=bf16,cutie_segment=bf16"  # order-free: one record per mapping
    assert gp.key(dict.fromkeys(CUTIE_ONLY, "fp32")) == "fp32" and not gp.reduced(dict.fromkeys(CUTIE_ONLY, "fp32"))
    # the key round-trips through the command-line form (the gate's hint names it)
    assert gp.resolve(gp.parse(gp.key(both)), "openvino", CUTIE_ONLY, check_installed=False) == both


@pytest.mark.parametrize("precision, backend, message", [
    ({"cutie_segmnt": "bf16"}, "openvino", "unknown tracker graph 'cutie_segmnt'; did you mean 'cutie_segment'"),
    ({"sam_image_encoder": "bf16"}, "openvino", "graph 'sam_image_encoder' is not in this export"),
    ({"cutie_segment": "fp16"}, "openvino", "asks for 'fp16', backend openvino runs fp32, bf16 only"),
    ({"cutie_segment": "bf16"}, "onnxruntime", "backend onnxruntime runs fp32 only (bf16 runs on backend openvino)"),
    ("bf16", "onnxruntime", "bf16 runs on backend openvino; onnxruntime runs fp32 only"),
    ("bf16", "tensorrt", "bf16 runs on backend openvino; tensorrt runs fp32 only"),
    ("int8", "openvino", "'int8' is not one of fp32, bf16"),
    (16, "openvino", "must be fp32 or bf16 or a mapping"),
    ("fp32", "cuda", "'cuda' is not a tracker backend"),
])
def test_bad_requests_are_one_line_errors_naming_the_fault(precision, backend, message):
    with pytest.raises(ConfigError) as info:
        gp.resolve(precision, backend, CUTIE_ONLY, check_installed=False)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bf16_without_openvino_installed_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the openvino package.*pip install"):
        gp.resolve("bf16", "openvino", CUTIE_ONLY)
    assert gp.resolve("fp32", "openvino", CUTIE_ONLY)["cutie_segment"] == "fp32"  # fp32 asks nothing of it


def test_bf16_on_a_cpu_without_bf16_units_is_a_clear_error(monkeypatch):
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino not installed (the missing-package error is tested above)")
    import runtime.inference.openvino as ov

    monkeypatch.setattr(ov, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2"})
    monkeypatch.setattr(ov, "bf16_support", lambda core=None: None)
    with pytest.raises(ConfigError, match="precision: precision bf16 needs a CPU with AMX-BF16 or AVX512-BF16"):
        gp.resolve({"cutie_encode_mask": "bf16"}, "openvino", CUTIE_ONLY)


def _tracker_config(options: dict) -> dict:
    return {"name": "t", "tracker": {"kind": "cutie", "options": {"model_dir": "m", **options}}}


def test_config_accepts_the_recipe_and_a_mapping_and_rejects_bad_ones_at_load():
    cfg = config_from_dict(_tracker_config({"backend": "openvino", "precision": "bf16"}))
    assert cfg.tracker.options["precision"] == "bf16"
    cfg = config_from_dict(_tracker_config({"backend": "openvino", "precision": {"cutie_encode_mask": "bf16"},
                                            "allow_unverified": True}))
    assert cfg.tracker.options["allow_unverified"] is True
    cases = [
        ({"precision": "bf16"}, "tracker.options.precision: bf16 runs on backend openvino"),
        ({"backend": "openvino", "precision": {"cutie_segmnt": "bf16"}},
         "tracker.options.precision: unknown tracker graph 'cutie_segmnt'; did you mean 'cutie_segment'"),
        ({"backend": "openvino", "allow_unverified": "yes"}, "tracker.options.allow_unverified: must be true or false"),
        ({"backend": "cuda"}, "tracker.options.backend: 'cuda' is not a tracker backend"),
        ({"precison": "bf16"}, "tracker.options.precison: unknown key; did you mean 'precision'?"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigError) as info:
            config_from_dict(_tracker_config(options))
        assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
