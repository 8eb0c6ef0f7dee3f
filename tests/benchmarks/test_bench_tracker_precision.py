"""benchmarks/tracker.py --precision-sweep helpers, without models: which subsets are measured and how
the recipe is chosen from the rows."""

from __future__ import annotations

from benchmarks import tracker as tbench

GRAPHS = ("a", "b", "c")


def _row(bf16, passed, mean_ms=100.0):
    return {"bf16": list(bf16), "status": "ok", "passed": passed, "per_frame_ms": {"mean": mean_ms}}


def test_every_subset_is_measured_once_smallest_first():
    subsets = tbench.bf16_subsets(GRAPHS)
    assert len(subsets) == 8 and len(set(subsets)) == 8
    assert subsets[0] == () and subsets[-1] == GRAPHS  # openvino all-fp32 first, all-bf16 last
    assert [len(s) for s in subsets] == sorted(len(s) for s in subsets)


def test_recipe_is_the_graphs_passing_alone_when_they_pass_together():
    rows = [_row((), True), _row(("a",), False), _row(("b",), True), _row(("c",), True),
            _row(("b", "c"), True, 80.0), _row(("a", "b", "c"), False, 50.0)]
    recipe = tbench.recipe_from_sweep(rows, GRAPHS)
    assert recipe["bf16"] == ["b", "c"] and "together they pass" in recipe["rule"]


def test_recipe_falls_back_to_the_fastest_passing_subset_when_the_union_fails():
    rows = [_row((), True), _row(("a",), True, 90.0), _row(("b",), True, 70.0), _row(("c",), False),
            _row(("a", "b"), False, 40.0)]
    recipe = tbench.recipe_from_sweep(rows, GRAPHS)
    assert recipe["bf16"] == ["b"] and "fastest passing" in recipe["rule"]


def test_no_passing_graph_means_all_fp32_and_unmeasured_rows_do_not_count():
    rows = [_row((), True), _row(("a",), False),
            {"bf16": ["b"], "status": "not measured", "reason": "no openvino"}]
    assert tbench.recipe_from_sweep(rows, GRAPHS)["bf16"] == []
