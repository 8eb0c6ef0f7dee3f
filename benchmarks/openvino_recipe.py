"""Which controller graphs can run in bf16 on OpenVINO: the measurement behind the bf16 recipe.

For one exported model, every split of {encoder, denoiser} x {fp32, bf16} on OpenVINO against
ONNX Runtime fp32 on the same synthetic observation and noise: action error / action range (the
gate is 1e-2), plus encoder and denoise ms of one run after a warm-up. One JSON line per split.

    python -m benchmarks.openvino_recipe --model /tmp/models/paper --threads 2
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np


def main() -> None:
    """Example: python -m benchmarks.openvino_recipe --model models/small"""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from runtime.controller import Controller
    from runtime.controller.manifest import DENOISER, ENCODER, Manifest
    from runtime.controller.verify import synthetic_obs
    from runtime.inference.openvino import OpenVinoBackend

    model = pathlib.Path(args.model)
    manifest = Manifest.load(model)
    obs = synthetic_obs(manifest, 1)[0]
    noise = np.random.default_rng(1).standard_normal((1, 64, 13)).astype(np.float32)
    ref = Controller.from_dir(model, "onnxruntime", threads=args.threads).predict(obs, noise=noise)
    span = float(ref.max() - ref.min())
    for enc_p, den_p in (("bf16", "bf16"), ("bf16", "fp32"), ("fp32", "bf16"), ("fp32", "fp32")):
        enc = OpenVinoBackend(model / manifest.graph(ENCODER).file, manifest.graph(ENCODER), enc_p, args.threads)
        den = OpenVinoBackend(model / manifest.graph(DENOISER).file, manifest.graph(DENOISER), den_p, args.threads)
        ctl = Controller(manifest, enc, den, model)
        ctl.predict(obs, noise=noise)  # warm-up
        action = ctl.predict(obs, noise=noise)
        print(json.dumps({"encoder": enc_p, "denoiser": den_p,
                          "error_of_range": float(np.abs(action - ref).max() / span),
                          **{k: round(v) for k, v in ctl.last_timing.items()}}), flush=True)
        ctl.close()


if __name__ == "__main__":
    main()
