"""`dexgrasp track`: run an exported learned tracker (Cutie, SAM init) over a folder of frames or a video."""

from __future__ import annotations

import argparse
import pathlib

from runtime.cli.argtypes import number

DESCRIPTION = """\
Track one object through a sequence with an exported tracker (`dexgrasp export tracker`):
initialise from a box (through the exported SAM) or a mask PNG on the first frame, then Cutie
on every frame. Writes one PNG mask per frame (0/255), probs.npz (per-frame foreground
probability, float16, key "probs") and prints one JSON line with per-graph latency p50/p99.

Precision (--precision, as tracker.options.precision): fp32 (exact), bf16 (openvino: the measured
per-graph recipe) or graph=precision,... for each graph. Anything below fp32 needs a passing
`--verify` recorded in the export's manifest.json, or --allow-unverified.

--verify runs ONNX Runtime fp32 and the asked backend/precision on the same frames (default: the
synthetic video at the export's size, 32 frames, initialised from its true mask; or --frames with
--init-mask / --box) and prints ONE JSON line: iou_mean, iou_min (worst frame), gate, passed. A pass
is recorded in manifest.json; exit status 1 below the gate.

examples:
  dexgrasp track --model models/tracker --frames head_frames/ --box 210,150,330,260 --output out/
  dexgrasp track --model models/tracker --frames episode.mp4 --init-mask first_mask.png --output out/
  dexgrasp track --model /tmp/tracker-demo --frames synthetic:32 --box 122,142,262,242 --output /tmp/trk
      (synthetic:N = a generated moving-object video, for trying it without a camera)
  dexgrasp track --verify --model models/tracker --backend openvino --precision bf16
  dexgrasp track --model models/tracker --backend openvino --precision bf16 --frames head_frames/ ...
"""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def register(subparsers) -> None:
    p = subparsers.add_parser("track", help="track an object with the exported Cutie/SAM tracker",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=pathlib.Path, required=True, help="export directory (manifest.json)")
    p.add_argument("--frames",
                   help="a directory of images (sorted by name), a video file, or synthetic:N")
    init = p.add_mutually_exclusive_group()
    init.add_argument("--box", help="x1,y1,x2,y2 in pixels of the first frame (needs SAM in the export)")
    init.add_argument("--init-mask", type=pathlib.Path, help="PNG mask of the first frame (nonzero = target)")
    p.add_argument("--output", type=pathlib.Path, help="output directory (not with --verify)")
    p.add_argument("--backend", choices=("onnxruntime", "openvino", "tensorrt"), default="onnxruntime",
                   help="inference backend (default: onnxruntime on the CPU)")
    p.add_argument("--precision", default="fp32",
                   help="fp32 (default), bf16 (openvino recipe) or graph=precision,... (see above)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="run a reduced precision without a recorded --verify pass")
    p.add_argument("--threads", type=number(int, 1, 1024), default=2, help="intra-op threads (default: 2)")
    p.add_argument("--max-frames", type=number(int, 0), default=0, help="stop after this many frames (0: all)")
    p.add_argument("--verify", action="store_true", help="gate --backend/--precision against fp32 (see above)")
    p.add_argument("--gate", type=number(float, 0, 1, lo_open=True), default=0.99,
                   help="--verify: minimum mask IoU vs fp32 on every frame (default 0.99)")
    p.add_argument("--no-record", action="store_true", help="--verify: do not record a pass in manifest.json")
    p.set_defaults(func=run)


def _parse_box(text: str):
    from runtime.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise ConfigError(f"--box must be x1,y1,x2,y2 numbers, got {text!r}") from exc
    if len(values) != 4:
        raise ConfigError(f"--box must have 4 numbers x1,y1,x2,y2, got {len(values)} in {text!r}")
    return values


def iter_frames(source: str, max_frames: int = 0, frame_hw: tuple[int, int] = (480, 640)):
    """Yield BGR uint8 frames from a directory of images, a video file or `synthetic:N` (of frame_hw)."""
    import cv2

    from runtime.errors import ConfigError

    count = 0
    if source.startswith("synthetic:"):
        from runtime.tracking.learned.synthetic import moving_object_video

        try:
            n = int(source.split(":", 1)[1])
        except ValueError as exc:
            raise ConfigError(f"--frames synthetic:N needs a frame count, got {source!r}") from exc
        h, w = frame_hw
        frames, _ = moving_object_video(n, height=h, width=w, radius_px=(max(4, w // 9), max(3, h // 10)),
                                        step_px=(w / 70, h / 120))
        yield from frames[: max_frames or None]
        return
    path = pathlib.Path(source)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"--frames {path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        for f in files:
            frame = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if frame is None:
                raise ConfigError(f"cannot read image {f}")
            yield frame
            count += 1
            if max_frames and count >= max_frames:
                return
        return
    if not path.is_file():
        raise ConfigError(f"--frames {path} is neither a directory nor a video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
            count += 1
            if max_frames and count >= max_frames:
                break
    finally:
        cap.release()
    if count == 0:
        raise ConfigError(f"video {path} has no readable frames")


def _read_mask(path: pathlib.Path):
    import cv2
    import numpy as np

    from runtime.errors import ConfigError

    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise ConfigError(f"cannot read --init-mask {path}")
    return (raw > 0).astype(np.uint8)


def verify(args, precision) -> int:
    """--verify: ONNX Runtime fp32 vs the asked backend/precision on the same frames (see DESCRIPTION)."""
    import json

    from runtime.errors import ConfigError
    from runtime.tracking.cutie import CutieTracker
    from runtime.tracking.learned import precision as graph_precision
    from runtime.tracking.learned import verify as tv

    if args.output is not None:
        raise ConfigError("--verify writes no masks: drop --output (it prints one JSON line)")
    if args.backend == "onnxruntime":
        raise ConfigError("--verify compares against onnxruntime fp32: give the backend to verify "
                          "(--backend openvino --precision bf16, or tensorrt)")
    candidate = CutieTracker(args.model, backend=args.backend, threads=args.threads, precision=precision,
                             allow_unverified=True)
    box = _parse_box(args.box) if args.box else None
    if args.frames is None:
        frames, masks = tv.synthetic_sequence(candidate.frame_hw, args.max_frames or tv.DEFAULT_FRAMES)
        first_mask, source = masks[0], f"synthetic {len(frames)} frames"
    else:
        if args.box is None and args.init_mask is None:
            raise ConfigError("--verify --frames needs --init-mask or --box for the first frame")
        frames = list(iter_frames(args.frames, args.max_frames, candidate.frame_hw))
        first_mask, source = (None if box else _read_mask(args.init_mask)), f"{args.frames} ({len(frames)} frames)"
    if len(frames) < 2:
        raise ConfigError(f"--verify needs at least 2 frames, got {len(frames)}")
    sam_reduced = any(candidate.graph_precision.get(g, "fp32") != "fp32" for g in graph_precision.SAM_GRAPHS)
    if sam_reduced and box is None:  # SAM in reduced precision is only exercised through a box init
        box = tv.box_of(first_mask)
    reference = CutieTracker(args.model, backend="onnxruntime", threads=args.threads)
    result = tv.compare(reference, candidate, frames, first_mask=first_mask, box=box, gate=args.gate)
    summary = {k: v for k, v in result.items() if not k.endswith("_frame_s")}
    summary = {"backend": args.backend, "precision": candidate.precision, "source": source, **summary,
               "reference_frame_p50_ms": _p50_ms(result["reference_frame_s"]),
               "candidate_frame_p50_ms": _p50_ms(result["candidate_frame_s"])}
    if result["passed"] and not args.no_record:
        summary["recorded"] = tv.record(args.model, args.backend, candidate.precision, result, source)["timestamp"]
    print(json.dumps(summary))
    return 0 if result["passed"] else 1


def _p50_ms(secs: list[float]) -> float:
    import statistics

    return round(statistics.median(secs) * 1e3, 1)


def run(args) -> int:
    import json

    import numpy as np
    from tqdm import tqdm

    from runtime.errors import ConfigError
    from runtime.tracking.cutie import CutieTracker
    from runtime.tracking.learned.precision import parse

    precision = parse(args.precision)
    if args.verify:
        return verify(args, precision)
    missing = [flag for flag, value in (("--frames", args.frames), ("--output", args.output)) if value is None]
    if args.box is None and args.init_mask is None:
        missing.append("--box or --init-mask")
    if missing:
        raise ConfigError(f"dexgrasp track needs {', '.join(missing)} (or --verify)")
    import cv2

    tracker = CutieTracker(args.model, backend=args.backend, threads=args.threads, precision=precision,
                           allow_unverified=args.allow_unverified)
    box = _parse_box(args.box) if args.box else None
    init_mask = _read_mask(args.init_mask) if args.init_mask is not None else None
    args.output.mkdir(parents=True, exist_ok=True)
    probs, lost_frames = [], 0
    for i, frame in enumerate(tqdm(iter_frames(args.frames, args.max_frames, tracker.frame_hw), desc="track", unit="frame")):
        result = tracker.init(frame, box_xyxy=box, mask=init_mask) if i == 0 else tracker.track(frame)
        cv2.imwrite(str(args.output / f"mask_{i:05d}.png"), result.mask * 255)
        probs.append(result.prob.astype(np.float16))
        lost_frames += int(result.lost)
    np.savez_compressed(args.output / "probs.npz", probs=np.stack(probs))
    latency = {name: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()
                      if k in ("count", "p50", "p99")}
               for name, s in tracker.latency_summary_ms().items()}
    print(json.dumps({"frames": len(probs), "lost_frames": lost_frames, "backend": args.backend,
                      "precision": tracker.precision, "output": str(args.output), "latency_ms": latency}))
    return 0
