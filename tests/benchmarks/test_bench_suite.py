"""The suite's plumbing with fake benchmark modules: results.json schema, report.md tables and the
"not measured" section, failures and hangs reported without stopping the suite, plots written."""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks import run_all
from benchmarks.common import suite

OK_BRIDGE = '''
import time

def run(quick, out_dir, **opts):
    (out_dir / "touched.txt").write_text("bridge ran")
    return {
        "device": "pty",
        "quick": quick,
        "opts": sorted(opts),
        "runs": [
            {"rate_hz": 100.0, "rtt_ms": {"count": 500, "p50": 0.4, "p99": 0.9, "max": 1.2}},
            {"rate_hz": 500.0, "rtt_ms": {"count": 2500, "p50": 0.5, "p99": 1.5, "max": 3.0}},
        ],
        "not_measured": [{"what": "USB-CDC to a real MCU", "reason": "no MCU attached"}],
        "plot_data": {
            "histograms": {"rtt 500 Hz": [0.4, 0.5, 0.6, 0.5, 0.45, 1.5, 0.52] * 10},
            "lateness_series": {"200 Hz": {"t_s": [i * 0.005 for i in range(200)],
                                           "lateness_us": [50.0 + (i % 7) for i in range(200)],
                                           "missed_t_s": [0.5]}},
            "timeline": [{"stage": "capture", "lane": "camera", "start_ms": 0.0, "end_ms": 1.0},
                         {"stage": "encoder", "lane": "policy", "start_ms": 1.0, "end_ms": 30.0},
                         {"stage": "serial write", "lane": "control", "start_ms": 31.0, "end_ms": 31.1}],
            "controller_bars": [{"label": "small", "exported_ms": 40.0, "eager_ms": 200.0, "floor_ms": 10.0}],
        },
    }
'''

FAILING_LOOP = '''
def run(quick, out_dir, **opts):
    raise RuntimeError("emulator exploded at 500 Hz")
'''

HANGING_PLANNER = '''
import subprocess, sys, time

def run(quick, out_dir, **opts):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (out_dir / "grandchild.pid").write_text(str(child.pid))
    time.sleep(120)
    return {}
'''

NO_RUN = '''
"""A module that forgot its run() function."""
VALUE = 1
'''

NARROW_SIGNATURE = '''
def run(quick, out_dir, config=None):
    return {"got_config": config, "quick": quick, "wobbly": float("nan")}
'''


def _make_fake_suite(tmp_path):
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in {"bridge": OK_BRIDGE, "control_loop": FAILING_LOOP, "planner": HANGING_PLANNER,
                       "perception": NO_RUN, "extra_probe": NARROW_SIGNATURE}.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    config = tmp_path / "sim.yaml"
    config.write_text("control:\n  rate_hz: 200\n")
    return pkg, config


@pytest.fixture
def fake_suite(tmp_path):
    return _make_fake_suite(tmp_path)


def _args(out, config, only="bridge,control_loop,planner,perception,extra_probe,stages", timeout=4.0):
    return argparse.Namespace(quick=True, out=out, config=config, model=None, checkpoint=None, only=only,
                              list=False, timeout=timeout)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """One suite run shared by the tests below (each child process costs real time)."""
    tmp_path = tmp_path_factory.mktemp("suite")
    pkg, config = _make_fake_suite(tmp_path)
    out = tmp_path / "out"
    results, rc = run_all.run_suite(_args(out, config), "test", bench_dir=pkg, package="fakebench")
    return results, rc, out


def test_discovery_finds_expected_and_extra_modules(fake_suite):
    pkg, _ = fake_suite
    specs = {s.name: s for s in suite.discover(pkg, "fakebench")}
    assert specs["bridge"].present and specs["bridge"].module == "fakebench.bridge"
    assert not specs["stages"].present  # expected but absent: reported as not run
    assert specs["extra_probe"].present  # not in the expected list, found by its run()
    assert specs["matmul"].module == "benchmarks.common.matmul"
    selected, unknown = suite.select(list(specs.values()), ["bridge", "nonsense"])
    assert [s.name for s in selected] == ["bridge"] and unknown == ["nonsense"]


def test_results_json_schema_and_machine(suite_run):
    results, rc, out = suite_run
    data = json.loads((out / "results.json").read_text())
    for key in ("schema", "started_utc", "command", "quick", "options", "config", "machine", "benchmarks",
                "headline", "not_measured", "plots", "wall_time_s"):
        assert key in data, key
    m = data["machine"]
    assert m["cpu"]["logical_cores"] >= 1 and m["cpu"]["model"]
    assert m["memory"]["total_gib"] > 0
    assert "present" in m["gpu"]
    assert m["python"]["version"].count(".") == 2
    assert m["packages"]["numpy"]
    assert "tensorrt" in m["packages"] and "onnxruntime" in m["packages"]
    assert data["config"]["content"] == {"control": {"rate_hz": 200}}
    assert data["wall_time_s"] > 0


def test_each_module_is_isolated_and_failures_are_not_fatal(suite_run):
    results, rc, out = suite_run
    b = results["benchmarks"]
    assert b["bridge"]["status"] == "ok"
    assert b["bridge"]["result"]["opts"] == ["config"]  # the config path is handed to **opts
    assert (out / "bridge" / "touched.txt").read_text() == "bridge ran"
    assert b["control_loop"]["status"] == "error"
    assert "emulator exploded at 500 Hz" in b["control_loop"]["reason"]
    assert b["planner"]["status"] == "timeout"
    assert b["perception"]["status"] == "error" and "no callable run" in b["perception"]["reason"]
    assert b["stages"]["status"] == "not_run" and "does not exist" in b["stages"]["reason"]
    # A module whose run() takes only `config` gets only that; NaN becomes null in JSON.
    assert b["extra_probe"]["status"] == "ok"
    assert b["extra_probe"]["result"]["got_config"].endswith("sim.yaml")
    assert b["extra_probe"]["result"]["wobbly"] is None
    assert rc == 1  # errors and timeouts make the exit status non-zero; the suite still finished


def test_hung_module_is_killed_with_its_children(suite_run):
    results, rc, out = suite_run
    pid = int((out / "planner" / "grandchild.pid").read_text())
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    if alive:  # reaped a moment later at most: check it is at least a zombie of nobody we own
        with open(f"/proc/{pid}/status") as f:
            assert "Z (zombie)" in f.read()


def test_headline_rows_from_module_results(suite_run):
    results, _, _ = suite_run
    rows = {h["key"]: h for h in results["headline"]}
    assert rows["bridge_rtt"]["status"] == "pass" and rows["bridge_rtt"]["measured"] == "1.50 ms"
    assert rows["loop_p99"]["status"] == "not measured"
    assert "emulator exploded" in rows["loop_p99"]["note"]
    assert rows["controller_speedup"]["status"] == "not measured"


def test_report_has_tables_and_not_measured_section(suite_run):
    _, _, out = suite_run
    md = (out / "report.md").read_text()
    assert "## Targets (DESIGN.md)" in md
    assert "| what | goal | measured | status | note |" in md
    assert "| Serial command->state round trip p99 at 500 Hz (pseudo-terminal) | < 5 ms, no lost frames | 1.50 ms | pass |" in md
    assert "## Benchmarks" in md and "| control_loop | error |" in md and "| pty |" in md
    assert "## bridge" in md and "runs[1].rtt_ms" in md  # per-benchmark latency table
    nm = md.split("## Not measured here", 1)[1]
    assert "TensorRT" in nm and "USB-CDC to a real MCU" in nm and "benchmark 'planner' (all of it)" in nm


def test_plots_written_and_non_empty(suite_run):
    results, _, out = suite_run
    drawn = [p for p in results["plots"] if p["path"]]
    assert len(drawn) == 4, results["plots"]
    for p in drawn:
        png = out / p["path"]
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    plot_data = json.loads((out / "bridge" / "plot_data.json").read_text())
    assert "histograms" in plot_data  # moved out of results.json, kept beside it
    assert "plot_data" not in results["benchmarks"]["bridge"]["result"]


def test_missing_plot_data_is_reported_not_fatal(tmp_path):
    from benchmarks.common.figures import make_plots

    made = make_plots({"x": {"timeline": [{"stage": "a", "lane": "l", "start_ms": 0}]}}, tmp_path)
    timeline = [p for p in made if "stage by stage" in p["title"]][0]
    assert timeline["path"] is None and "KeyError" in timeline["reason"]


def test_bad_arguments_are_clear_errors(fake_suite, tmp_path):
    pkg, config = fake_suite
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_all.run_suite(_args(tmp_path / "o", config, only="nope"), "t", bench_dir=pkg, package="fakebench")
    with pytest.raises(SystemExit, match="no such file"):
        run_all.run_suite(_args(tmp_path / "o", tmp_path / "missing.yaml"), "t", bench_dir=pkg,
                          package="fakebench")


def test_cli_module_imports_only_stdlib_and_shows_help():
    code = ("import sys, runtime.cli.bench as b, runtime.cli.main as m\n"
            "heavy = [k for k in ('numpy', 'torch', 'onnxruntime', 'matplotlib') if k in sys.modules]\n"
            "print(','.join(heavy))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.strip() == ""
    res = subprocess.run([sys.executable, "-m", "runtime.cli.main", "bench", "--help"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0 and "--quick" in res.stdout and "dexgrasp bench --quick --out" in res.stdout


def test_summary_is_a_short_paste_ready_block(suite_run):
    _, _, out = suite_run
    text = (out / "summary.md").read_text()
    assert "Reproduce: `test`" in text and "| what | goal | measured | status |" in text
    assert "< 5 ms, no lost frames | 1.50 ms | pass |" in text
    assert len(text.splitlines()) < 40
