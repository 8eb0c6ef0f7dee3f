"""`dexgrasp check --config FILE`: the preflight checklist before a robot moves.

Why: `dexgrasp run` on a new robot used to be the first test of everything at once (config, model,
cameras, serial link, permissions), with the arm attached. This command opens each part the way
`run` would, without arming or commanding anything, and prints one line per check:
pass / fail / skipped with the reason. "skipped: no device" means the hardware (or its driver) is
absent here; the run needs it, so the exit code stays 1 unless --allow-missing-hardware. Checks
that cannot be confirmed here but do not stop a run (real-time permissions, a planner that is not
up yet) are skipped with the reason and leave the exit code alone.

Exit code 0 iff `dexgrasp run` would start. The last line printed is one JSON object
{"ok": bool, "checks": [{"name", "status", "detail"}]}. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

DESCRIPTION = """\
Preflight checklist for a config: config valid; model present, hashes match, backend loads,
precision verified; cameras found and streaming at the configured size and rate; robot link
reachable, handshake and joint names match; real-time permissions and what will apply; clock
sources; planner reachable (remote); disk space for recording. Nothing is armed or moved.

Exit code 0 iff `dexgrasp run` would start. The last line is JSON:
{"ok": bool, "checks": [{"name", "status", "detail"}]}

Examples:
  dexgrasp check --config configs/sim.yaml
  dexgrasp check --config configs/robot_example.yaml --model-dir models/robot
  dexgrasp check --config robot.yaml --allow-missing-hardware     # on a desk without the robot
"""

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
NO_DEVICE = "no device"
MIN_FREE_BYTES = 1 << 30  # recording: at least 1 GiB free (a 640x480 episode is ~100 MB a minute)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    # A skipped check the run cannot start without (an absent device): blocks unless allowed.
    needed: bool = False

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def register(subparsers) -> None:
    from runtime.cli.argtypes import number

    p = subparsers.add_parser("check", help="preflight checklist of a config (nothing moves)", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="CONFIG", help="YAML file or preset name (e.g. sim)")
    p.add_argument("--model-dir", metavar="DIR", help="exported controller directory (overrides policy.model_dir)")
    p.add_argument("--record", metavar="DIR", help="recording directory to check (overrides recording.dir)")
    p.add_argument("--allow-missing-hardware", action="store_true",
                   help="absent devices (skipped: no device) do not fail the check: exit 0 means the run would "
                        "start once they are connected")
    p.add_argument("--timeout", type=number(float, 0, 60, lo_open=True), default=3.0, metavar="S",
                   help="seconds to wait for each device or the planner (default 3)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Example: dexgrasp check --config configs/sim.yaml"""
    checks = run_checks(args.config, model_dir=args.model_dir, record=args.record, timeout_s=args.timeout)
    ok = is_ok(checks, allow_missing_hardware=args.allow_missing_hardware)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:<8} {c.name:<{width}}  {c.detail}")
    print(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}))
    sys.stdout.flush()
    return 0 if ok else 1


def is_ok(checks: list[Check], allow_missing_hardware: bool = False) -> bool:
    """Would `dexgrasp run` start: nothing failed and no device it needs is absent."""
    if any(c.status == FAIL for c in checks):
        return False
    return allow_missing_hardware or not any(c.status == SKIPPED and c.needed for c in checks)


def run_checks(config: str, model_dir: str | None = None, record: str | None = None,
               timeout_s: float = 3.0) -> list[Check]:
    """All checks in order; a config that does not load is the first and only line."""
    from runtime.config import load_config
    from runtime.errors import DexGraspError

    overrides: dict = {}
    if model_dir:
        overrides["policy"] = {"model_dir": model_dir}
    if record:
        overrides["recording"] = {"dir": record}
    try:
        cfg = load_config(config, overrides or None)
    except (DexGraspError, OSError, ValueError) as exc:
        return [Check("config", FAIL, _one_line(exc))]
    robot = cfg.robot
    checks = [Check("config", PASS, f"{config}: valid (name {cfg.name})"),
              Check("joint space", PASS,
                    f"{robot.n_joints} joints ({robot.n_arm} arm {robot.units} + {robot.n_hand} hand 0..1), home and "
                    f"place inside the limits; safety.speed_scale {cfg.safety.speed_scale:g}")]
    for fn in (check_model, check_cameras, check_link, check_realtime, check_clocks, check_planner, check_disk):
        try:
            checks.extend(fn(cfg, timeout_s))
        except Exception as exc:  # a check's own bug must not hide the other checks
            checks.append(Check(fn.__name__.removeprefix("check_"), FAIL, f"unexpected error: {_one_line(exc)}"))
    return checks


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---- model ------------------------------------------------------------------------------------

def check_model(cfg, timeout_s: float) -> list[Check]:
    import importlib.util

    from runtime.errors import DexGraspError

    p = cfg.policy
    if p.backend == "fake":
        return [Check("model", SKIPPED, "policy.backend fake: no model to check")]
    from runtime.config.components import check_action_rate
    from runtime.config.models import MANIFEST, cached_model_dir
    from runtime.controller.integrity import verify_graph_hashes
    from runtime.controller.manifest import Manifest

    if p.model_dir:
        path = os.path.expanduser(p.model_dir)
        if not os.path.isfile(os.path.join(path, MANIFEST)):
            return [Check("model", FAIL, f"policy.model_dir {path}: no exported controller there ({MANIFEST} "
                                         "missing); export one with `dexgrasp export controller` or pass --model-dir")]
    else:
        path = str(cached_model_dir(p.preset, p.seed, cfg.robot))
        if not os.path.isfile(os.path.join(path, MANIFEST)):
            if importlib.util.find_spec("torch") is None:
                return [Check("model", FAIL, f"no cached '{p.preset}' model and no torch to make one "
                                             "(pip install -e '.[export]', or set policy.model_dir)")]
            return [Check("model", SKIPPED, f"the random-weight '{p.preset}' model is made and cached by the first "
                                            f"`dexgrasp run` (at {path})")]
    out: list[Check] = []
    try:
        manifest = Manifest.load(path)
        out.append(Check("model", PASS, f"{path}: action {manifest.action_horizon}x{manifest.action_dim}, "
                                        f"exported precision {manifest.precision}"))
        cfg.robot.joint_space().check_model(manifest, where=f"model {path}")
        check_action_rate(cfg.control.action_rate_hz, path)
        out.append(Check("model joint space", PASS, f"action_dim and right_state match {cfg.robot.n_joints} joints; "
                                                    f"action grid {cfg.control.action_rate_hz:g} Hz"))
        verify_graph_hashes(path, manifest, names=("encoder", "denoiser"))
        out.append(Check("graph hashes", PASS, "encoder and denoiser sha256 match the manifest"))
    except DexGraspError as exc:
        out.append(Check(["model", "model joint space", "graph hashes"][len(out)], FAIL, _one_line(exc)))
        return out
    backend, precision, why = p.backend, p.precision, "configured"
    if backend == "auto":
        from runtime.inference.auto import choose

        choice = choose(path, threads=p.threads, verify_missing=False)
        backend, precision, why = choice.backend, choice.precision, f"auto: {choice.reason}"
    out.append(_precision_check(manifest, backend, precision, p.allow_unverified))
    if out[-1].status == FAIL:
        out.append(Check("backend", SKIPPED, "not loaded: the precision is not verified"))
        return out
    absent = missing_accelerator(backend, p.providers)
    if absent:
        out.append(Check("backend", SKIPPED, f"{NO_DEVICE}: {backend}: {absent}", needed=True))
        return out
    try:
        from runtime.controller import Controller

        ctl = Controller.from_dir(path, backend=backend, precision=precision, providers=p.providers,
                                  threads=p.threads, allow_unverified=p.allow_unverified)
        try:
            detail = f"{backend} {precision} loads ({why})"
        finally:
            close = getattr(ctl, "close", None)
            if close is not None:
                close()
        out.append(Check("backend", PASS, detail))
    except (DexGraspError, ImportError, RuntimeError, OSError) as exc:
        out.append(Check("backend", FAIL, f"{backend} {precision}: {_one_line(exc)}"))
    return out


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def missing_accelerator(backend: str, providers: list[str] | None) -> str | None:
    """Why the configured accelerator is absent here (the GPU the robot computer has), or None."""
    import importlib.util

    if backend == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT (python module tensorrt) not installed here; it comes with JetPack on the robot"
        return None
    if backend == "onnxruntime" and providers:
        try:
            import onnxruntime
        except ImportError:
            return None  # the backend load reports it
        available = set(onnxruntime.get_available_providers())
        gone = [x for x in providers if x in GPU_PROVIDERS and x not in available]
        if gone:
            return (f"ONNX Runtime providers {gone} not available here (available: {sorted(available)}); "
                    "a GPU build (onnxruntime-gpu) on the robot has them")
    return None


def _precision_check(manifest, backend: str, precision: str, allow_unverified: bool) -> Check:
    if precision == "fp32":
        return Check("precision", PASS, "fp32: exact, no verification needed")
    record = manifest.verification(backend, precision)
    if record is not None:
        err = record.get("max_error_of_range")
        gate = record.get("gate")
        return Check("precision", PASS, f"{backend} {precision} verified (max error {err} of the action range, "
                                        f"gate {gate}, {record.get('timestamp', '?')})")
    if allow_unverified:
        return Check("precision", SKIPPED, f"{backend} {precision} unverified; runs because allow_unverified is set")
    return Check("precision", FAIL, f"{backend} {precision} has no passing verification of these graphs; run "
                                    f"`dexgrasp engine verify --backend {backend} --precision {precision}`")


# ---- cameras ----------------------------------------------------------------------------------

def check_cameras(cfg, timeout_s: float) -> list[Check]:
    cams = cfg.cameras
    if cams.kind != "realsense":  # synthetic / simulated scenes: images made in process
        return [Check("cameras", PASS, f"{cams.kind} head {cams.head.width}x{cams.head.height} and wrist "
                                       f"{cams.wrist.width}x{cams.wrist.height} (simulated, no device needed)")]
    return [_realsense_check(role, getattr(cams, role), timeout_s) for role in ("head", "wrist")]


def _realsense_check(role: str, cam, timeout_s: float) -> Check:
    name = f"camera {role}"
    want = f"{cam.width}x{cam.height}@{cam.fps:g}"
    if cam.bag_path:
        if not os.path.isfile(os.path.expanduser(cam.bag_path)):
            return Check(name, FAIL, f"recording {cam.bag_path} not found")
    try:
        from runtime.cameras.realsense import RealSenseCamera, find_cameras

        found = [] if cam.bag_path else find_cameras()
    except ImportError as exc:
        return Check(name, SKIPPED, f"{NO_DEVICE}: pyrealsense2 not usable here ({_one_line(exc)})", needed=True)
    except RuntimeError as exc:  # librealsense without USB access
        return Check(name, SKIPPED, f"{NO_DEVICE}: librealsense: {_one_line(exc)}", needed=True)
    serials = [d.get("serial") for d in found]
    if not cam.bag_path:
        if not serials:
            return Check(name, SKIPPED, f"{NO_DEVICE}: no RealSense connected (serial {cam.serial})", needed=True)
        if cam.serial is not None and cam.serial not in serials:
            return Check(name, FAIL, f"serial {cam.serial} not connected; connected: {serials}")
    camera = RealSenseCamera(role, cam.serial, cam.width, cam.height, cam.fps, bag_path=cam.bag_path,
                             start_timeout_ms=timeout_s * 1e3)
    try:
        camera.connect()
        fps, shape = measure_stream(camera, seconds=min(2.0, timeout_s), timeout_ms=timeout_s * 1e3)
    except Exception as exc:
        return Check(name, FAIL, f"{camera.describe()}: {_one_line(exc)}")
    finally:
        camera.disconnect()
    return stream_verdict(name, want, cam.width, cam.height, cam.fps, fps, shape, cam.serial)


def measure_stream(camera, seconds: float, timeout_ms: float) -> tuple[float, tuple]:
    """Frames per second (from capture times) and the image shape of a connected camera."""
    first = camera.read(timeout_ms)
    times, shape = [first.t_capture], first.image.shape
    while times[-1] - times[0] < seconds:
        times.append(camera.read(timeout_ms).t_capture)
    return (len(times) - 1) / (times[-1] - times[0]), tuple(shape)


def stream_verdict(name: str, want: str, width: int, height: int, fps_want: float, fps: float, shape: tuple,
                   serial: str | None) -> Check:
    """Pass when the image has the configured size and the rate is within 10 % of the configured."""
    got = f"{shape[1]}x{shape[0]}@{fps:.1f}"
    if (shape[1], shape[0]) != (width, height):
        return Check(name, FAIL, f"serial {serial}: images are {shape[1]}x{shape[0]}, configured {width}x{height}")
    if abs(fps - fps_want) > 0.1 * fps_want:
        return Check(name, FAIL, f"serial {serial}: streams at {fps:.1f} fps, configured {fps_want:g} "
                                 "(USB 2 port? another process on the camera?)")
    return Check(name, PASS, f"serial {serial}: streaming {got} (configured {want})")


# ---- robot link -------------------------------------------------------------------------------

def check_link(cfg, timeout_s: float) -> list[Check]:
    b = cfg.bridge
    if b.kind == "fake":
        return [Check("robot link", PASS, "fake bridge (no device)")]
    if b.kind == "serial" and not os.path.exists(b.port):
        return [Check("robot link", SKIPPED, f"{NO_DEVICE}: serial port {b.port} not present", needed=True)]
    from runtime.clock import Clock
    from runtime.config.components import make_bridge

    where = f"{b.kind} {b.port}" if b.port else b.kind
    try:
        handle = make_bridge(cfg, Clock())  # opens, handshakes (joint names, firmware limits); never arms
    except Exception as exc:
        if b.kind == "ros2" and isinstance(exc, (ConnectionError, TimeoutError)):
            # No controller answering on DDS: the robot (its driver) is not here.
            return [Check("robot link", SKIPPED, f"{NO_DEVICE}: {where}: {_one_line(exc)}", needed=True)]
        return [Check("robot link", FAIL, f"{where}: {_one_line(exc)}")]
    try:
        bridge = handle.bridge
        info = getattr(bridge, "device_info", None)
        version = getattr(info, "protocol_version", None)
        handshake = f"handshake ok (protocol {version}, joint-name schema hash matches)" if version else "connected"
        names = getattr(getattr(bridge, "limits", None), "names", None)
        same = names is None or list(names) == cfg.robot.joint_names
        detail = f"{handle.description}: {handshake}, {cfg.robot.n_joints} joints"
        if not same:
            detail = f"{handle.description}: joint names differ: link {list(names)}, config {cfg.robot.joint_names}"
        status = PASS if same else FAIL
    finally:
        handle.close()
    return [Check("robot link", status, detail)]


# ---- host -------------------------------------------------------------------------------------

def check_realtime(cfg, timeout_s: float) -> list[Check]:
    """What of control.realtime will apply here; a refusal does not stop the run (it reports it)."""
    import resource
    import threading

    from runtime.realtime import apply_thread_realtime

    rt = cfg.control.realtime
    parts, refused = [], []
    affinity = rt.cpu_affinity
    if affinity:
        usable = sorted(os.sched_getaffinity(0))
        missing = sorted(set(affinity) - set(usable))
        if missing:
            refused.append(f"CPU affinity {affinity} not applied: CPU(s) {missing} not available here (usable: {usable})")
            affinity = None
    if rt.sched_fifo_priority is not None or affinity:
        result: dict = {}
        # Applied to a throwaway thread: proves the permission without changing this process.
        t = threading.Thread(target=lambda: result.update(apply_thread_realtime(rt.sched_fifo_priority, affinity)))
        t.start()
        t.join()
        for key, label in (("sched_fifo", "SCHED_FIFO"), ("cpu_affinity", "CPU affinity")):
            value = result.get(key)
            if value is None:
                continue
            if value.startswith("not applied"):
                refused.append(f"{label} {value}")
            else:
                parts.append(f"{label} {value.removeprefix('applied').strip()} will apply")
    if rt.mlockall:
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        if os.geteuid() == 0 or soft == resource.RLIM_INFINITY:
            parts.append("mlockall will apply")
        else:
            refused.append(f"mlockall not applied: RLIMIT_MEMLOCK {soft // 1024} KiB "
                           "(ulimit -l unlimited, or LimitMEMLOCK=infinity in the systemd unit)")
    if not parts and not refused:
        return [Check("real-time", PASS, "none requested (control.realtime): the loop runs SCHED_OTHER")]
    if refused:
        return [Check("real-time", SKIPPED, "; ".join(refused + parts) + " (the run starts without them; "
                                                                           "expect more loop lateness)")]
    return [Check("real-time", PASS, "; ".join(parts))]


def check_clocks(cfg, timeout_s: float) -> list[Check]:
    import time

    info = time.get_clock_info("monotonic")
    source = "unknown"
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            source = f.read().strip()
    except OSError:
        pass
    detail = f"loop clock {info.implementation} (resolution {info.resolution:g} s); kernel clocksource {source}"
    if cfg.cameras.kind == "realsense":
        detail += "; RealSense frames mapped onto it from the device clock"
    if info.resolution > 1e-3 or not info.monotonic:
        return [Check("clocks", FAIL, detail + ": too coarse for the control loop")]
    return [Check("clocks", PASS, detail)]


def check_planner(cfg, timeout_s: float) -> list[Check]:
    pl = cfg.planner
    if not pl.enabled:
        return [Check("planner", SKIPPED, "planner disabled (targets from tracker.manual_box_xyxy or dexgrasp ctl)")]
    if pl.backend == "local":
        return [Check("planner", PASS, "local backend (in process, no model)")]
    from runtime.episode.app_glue import make_planner

    client = None
    try:
        client = make_planner(cfg, None)
        client.start()
        up = client.wait_connected(timeout_s)
        status = client.status()
    except Exception as exc:
        return [Check("planner", SKIPPED, f"{pl.address}: {_one_line(exc)} (the run starts; episodes wait for it)")]
    finally:
        if client is not None:
            client.stop()
    if not up:
        why = status.get("link_error") or f"no answer within {timeout_s:g} s"
        return [Check("planner", SKIPPED, f"{pl.address} not reachable: {why} (the run starts; episodes wait for it)")]
    server = status.get("server") or {}
    model = server.get("model") or server.get("backend", "?")  # older servers do not send the model
    return [Check("planner", PASS, f"{pl.address}: server {server.get('server', '?')}, backend "
                                   f"{server.get('backend', '?')}, model {model}")]


def check_disk(cfg, timeout_s: float) -> list[Check]:
    import shutil
    from pathlib import Path

    rec = cfg.recording
    if not rec or not rec.get("dir"):
        return [Check("disk", SKIPPED, "recording off (recording.dir / --record)")]
    path = Path(os.path.expanduser(rec["dir"]))
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    where = f"{path} ({'exists' if path.exists() else f'made at start under {probe}'})"
    if not os.access(probe, os.W_OK):
        return [Check("disk", FAIL, f"{where}: not writable by this user")]
    if free < MIN_FREE_BYTES:
        return [Check("disk", FAIL, f"{where}: {free / 2**30:.2f} GiB free, need >= {MIN_FREE_BYTES / 2**30:g} GiB")]
    return [Check("disk", PASS, f"{where}: {free / 2**30:.1f} GiB free (~{free / 100e6:.0f} min of 640x480 "
                                "episodes)")]
