"""`dexgrasp infer`: run an exported controller on saved policy inputs (torch-free)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run an exported controller once (or --repeat N times) on policy inputs saved in an .npz:
  rgbm float32 (1,1,4,518,518), right_cam_img float32 (1,1,3,518,518), right_state float32 (1,1,13)
exactly as upstream's process_obs hands them to predict_action. The initial DDIM sample comes
from --noise NOISE.npz (`noise` float32 (1,64,13)) or is drawn with --seed.
Writes OUT.npz with `action` float32 (1,64,13), the un-normalized action chunk; the last line
printed is a JSON object of median milliseconds: {"encoder_ms", "denoise_ms", "total_ms"}.
Does not import torch.

Example:
  dexgrasp infer --model models/small --obs obs.npz --output action.npz --seed 0 --repeat 3
  dexgrasp infer --model models/small --obs obs.npz --output a.npz --backend openvino --precision bf16
"""


from runtime.cli.argtypes import number  # noqa: E402


def register(subparsers) -> None:
    p = subparsers.add_parser("infer", help="run an exported controller on saved inputs",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="exported model directory (manifest.json)")
    p.add_argument("--obs", required=True, metavar="OBS.npz", help="policy inputs")
    p.add_argument("--output", required=True, metavar="OUT.npz", help="where to write `action`")
    p.add_argument("--noise", metavar="NOISE.npz", help="initial DDIM sample (`noise`)")
    p.add_argument("--seed", type=number(int, 0), help="seed for the initial sample when --noise is not given")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt"), default="onnxruntime")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16", "int8"), default="fp32",
                   help="compute precision (bf16: openvino on AMX/AVX512-BF16 CPUs; default fp32)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="run a reduced precision without a passing `dexgrasp engine verify`")
    p.add_argument("--providers", help="ONNX Runtime providers, comma separated: cpu,cuda,tensorrt")
    p.add_argument("--repeat", type=number(int, 1, 100000), default=1, help="run N times, report medians (default 1)")
    p.add_argument("--threads", type=number(int, 1, 1024), help="CPU threads (onnxruntime, openvino; default: all cores)")
    p.set_defaults(func=run)


def _load_npz(path: str, what: str) -> dict:
    import zipfile

    import numpy as np

    from runtime.errors import ObservationError

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as exc:
        raise ObservationError(f"{what} file '{path}' does not exist") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ObservationError(f"{what} file '{path}' is not a readable .npz: {exc}") from exc


def _check_output(path: str) -> None:
    """Fail before running the model if --output cannot be written (missing folder, no permission)."""
    import os

    from runtime.errors import ConfigError

    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"--output '{path}' is a directory; give a file name such as OUT.npz")
    if not os.path.isdir(parent):
        raise ConfigError(f"--output '{path}': directory '{parent}' does not exist")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"--output '{path}' is not writable")
    if not os.path.exists(path) and not os.access(parent, os.W_OK):
        raise ConfigError(f"--output '{path}': directory '{parent}' is not writable")


def run(args: argparse.Namespace) -> int:
    import json
    import statistics

    import numpy as np

    from runtime.controller import Controller
    from runtime.errors import ConfigError, ObservationError

    _check_output(args.output)  # before the (slow) inference, so a typo costs nothing
    obs = _load_npz(args.obs, "observation")
    noise = None
    if args.noise:
        noise_file = _load_npz(args.noise, "noise")
        if "noise" not in noise_file:
            raise ObservationError(f"noise file '{args.noise}' has no array named 'noise' (has {sorted(noise_file)})")
        noise = noise_file["noise"]
    providers = args.providers.split(",") if args.providers else None
    controller = Controller.from_dir(args.model, backend=args.backend, precision=args.precision,
                                     threads=args.threads, providers=providers,
                                     allow_unverified=args.allow_unverified)
    if noise is None:
        noise = np.random.default_rng(args.seed).standard_normal(controller.sample_shape).astype(np.float32)
    timings = []
    for _ in range(args.repeat):
        action = controller.predict(obs, noise=noise)
        timings.append(controller.last_timing)
    try:
        # a file object, not a name: np.savez would append ".npz" (turning /dev/full into /dev/full.npz)
        with open(args.output, "wb") as f:
            np.savez(f, action=action[None].astype(np.float32))
    except OSError as exc:
        raise ConfigError(f"--output '{args.output}': cannot write: {exc.strerror or exc}") from exc
    medians = {k: round(statistics.median(t[k] for t in timings), 3) for k in ("encoder_ms", "denoise_ms", "total_ms")}
    print(f"wrote {args.output}: action {tuple(action[None].shape)} float32, "
          f"range [{action.min():.4f}, {action.max():.4f}]")
    print(json.dumps(medians))
    return 0
