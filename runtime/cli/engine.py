"""`dexgrasp engine build|verify`: compile an exported controller for this machine and gate its accuracy.

Torch-free: both read the exported ONNX graphs and manifest.json only, so they run on the robot.
"""

from __future__ import annotations

import argparse

from runtime.cli.argtypes import number

BUILD_DESCRIPTION = """\
Compile an exported controller for the backend that will run it, on this machine:
  --backend openvino: compile each graph (with the precision recipe) and fill the compiled-model
                      cache under the dexgrasp cache root, so `dexgrasp run` starts fast;
  --backend tensorrt: build TensorRT engines next to the graphs and record them in manifest.json
                      (needs TensorRT and a GPU: the `gpu` extra).
A reduced precision still needs `dexgrasp engine verify` before the runtime starts it.

Example:
  dexgrasp engine build --model models/small --backend openvino --precision bf16
"""

VERIFY_DESCRIPTION = """\
Run the fp32 reference (onnxruntime fp32) and the candidate backend/precision on the same
observations and initial noise, and print ONE JSON line: max_error_of_range (max |a - a_ref| over
the reference action range), cosine, per-graph errors (encoder K/V, denoiser fed the reference K/V),
gate and passed. Observations: seeded synthetic ones by default, --obs OBS.npz (policy inputs as for
`dexgrasp infer`), or frames of recorded episodes (--episodes DIR). A pass is recorded in
manifest.json (`verifications`); exit status 1 when above the gate.

Example:
  dexgrasp engine verify --model models/small --backend openvino --precision bf16
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("engine", help="build and verify backend engines of an exported controller",
                              description=__doc__)
    sub = p.add_subparsers(dest="engine_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser("build", help="compile the graphs for this machine", description=BUILD_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(b)
    b.add_argument("--calibration", metavar="EPISODES_DIR", help="recorded episodes to calibrate int8 on (tensorrt)")
    b.add_argument("--timing-cache", metavar="FILE", help="TensorRT timing cache (default: DIR/timing.cache)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=build)
    v = sub.add_parser("verify", help="gate a backend/precision against fp32", description=VERIFY_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(v)
    src = v.add_mutually_exclusive_group()
    src.add_argument("--obs", metavar="OBS.npz", help="policy inputs to verify on")
    src.add_argument("--episodes", metavar="DIR", help="recorded episodes to take observations from")
    v.add_argument("--count", type=number(int, 1, 1000), default=2,
                   help="observations (synthetic or from episodes; default 2)")
    v.add_argument("--seed", type=number(int, 0), default=0, help="seed of the observations and noise (default 0)")
    v.add_argument("--max-error", type=number(float, 0, 1, lo_open=True), default=1e-2,
                   help="gate: max action error / action range (default 1e-2)")
    v.add_argument("--no-record", action="store_true", help="do not record a pass in manifest.json")
    v.set_defaults(func=verify)


def _common(p) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="exported model directory (manifest.json)")
    p.add_argument("--backend", required=True, choices=("openvino", "tensorrt", "onnxruntime"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16", "int8"))
    p.add_argument("--threads", type=number(int, 1, 1024), help="CPU threads (default: all cores)")


def build(args: argparse.Namespace) -> int:
    import pathlib

    from runtime.controller.manifest import DENOISER, ENCODER, Manifest
    from runtime.errors import ConfigError

    manifest = Manifest.load(args.model)
    if args.backend == "tensorrt":
        from runtime.errors import require

        require("tensorrt", "gpu", "`dexgrasp engine build --backend tensorrt`")
        from export.tensorrt_build import build_engines

        build_engines(args.model, manifest, precision=args.precision, calibration=args.calibration,
                      timing_cache=args.timing_cache, progress=not args.no_progress)
        print(f"built TensorRT {args.precision} engines in {args.model}")
        return 0
    if args.backend != "openvino":
        raise ConfigError(f"`engine build` is for openvino or tensorrt; {args.backend} needs no build")
    if args.calibration:
        raise ConfigError("--calibration is for tensorrt int8 builds; openvino builds fp32 or bf16")
    from tqdm import tqdm

    from runtime.inference.openvino import OpenVinoBackend, check_precision, precision_for

    check_precision(args.precision)
    names = (ENCODER, DENOISER)
    for name in tqdm(names, desc="compiling", unit="graph", disable=args.no_progress):
        spec = manifest.graph(name)
        backend = OpenVinoBackend(pathlib.Path(args.model) / spec.file, spec,
                                  precision=precision_for(args.precision, name), threads=args.threads)
        state = "cached already" if backend.cache_hit else "compiled"
        tqdm.write(f"{name}: {backend.precision} {state} ({backend.blob.parent if backend.blob else 'no cache'})")
        backend.close()
    return 0


def _observations(args, manifest) -> tuple[list[dict], str]:
    from runtime.cli.infer import _load_npz
    from runtime.controller.verify import episode_obs, synthetic_obs

    if args.obs:
        return [_load_npz(args.obs, "observation")], args.obs
    if args.episodes:
        return episode_obs(args.episodes, manifest, args.count), args.episodes
    return synthetic_obs(manifest, args.count, args.seed), f"synthetic seed {args.seed}"


def verify(args: argparse.Namespace) -> int:
    import json

    from runtime.controller import Controller
    from runtime.controller.manifest import Manifest
    from runtime.controller.verify import compare, record

    manifest = Manifest.load(args.model)
    observations, source = _observations(args, manifest)
    reference = Controller.from_dir(args.model, backend="onnxruntime", threads=args.threads)
    candidate = Controller.from_dir(args.model, backend=args.backend, precision=args.precision,
                                    threads=args.threads, allow_unverified=True)
    try:
        result = compare(reference, candidate, observations, seed=args.seed, gate=args.max_error)
    finally:
        reference.close()
        candidate.close()
    result = {"backend": args.backend, "precision": args.precision, "source": source, **result}
    if result["passed"] and not args.no_record:
        result["recorded"] = record(args.model, args.backend, args.precision, result, source)["timestamp"]
    print(json.dumps(result))
    return 0 if result["passed"] else 1
