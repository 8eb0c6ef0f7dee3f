"""`dexgrasp track`: run an exported learned tracker (Cutie, SAM init) over a folder of frames or a video."""

from __future__ import annotations

import argparse
import pathlib

DESCRIPTION = """\
Track one object through a sequence with an exported tracker (`dexgrasp export tracker`):
initialise from a box (through the exported SAM) or a mask PNG on the first frame, then Cutie
on every frame. Writes one PNG mask per frame (0/255), probs.npz (per-frame foreground
probability, float16, key "probs") and prints one JSON line with per-graph latency p50/p99.

examples:
  dexgrasp track --model models/tracker --frames head_frames/ --box 210,150,330,260 --output out/
  dexgrasp track --model models/tracker --frames episode.mp4 --init-mask first_mask.png --output out/
  dexgrasp track --model /tmp/tracker-demo --frames synthetic:32 --box 122,142,262,242 --output /tmp/trk
      (synthetic:N = a generated moving-object video, for trying it without a camera)
"""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def register(subparsers) -> None:
    p = subparsers.add_parser("track", help="track an object with the exported Cutie/SAM tracker",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=pathlib.Path, required=True, help="export directory (manifest.json)")
    p.add_argument("--frames", required=True,
                   help="a directory of images (sorted by name), a video file, or synthetic:N")
    init = p.add_mutually_exclusive_group(required=True)
    init.add_argument("--box", help="x1,y1,x2,y2 in pixels of the first frame (needs SAM in the export)")
    init.add_argument("--init-mask", type=pathlib.Path, help="PNG mask of the first frame (nonzero = target)")
    p.add_argument("--output", type=pathlib.Path, required=True, help="output directory")
    p.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                   help="inference backend (default: onnxruntime on the CPU)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default: 2)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
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


def run(args) -> int:
    import json

    import cv2
    import numpy as np
    from tqdm import tqdm

    from runtime.errors import ConfigError
    from runtime.tracking.cutie import CutieTracker

    tracker = CutieTracker(args.model, backend=args.backend, threads=args.threads)
    box = _parse_box(args.box) if args.box else None
    init_mask = None
    if args.init_mask is not None:
        raw = cv2.imread(str(args.init_mask), cv2.IMREAD_GRAYSCALE)
        if raw is None:
            raise ConfigError(f"cannot read --init-mask {args.init_mask}")
        init_mask = (raw > 0).astype(np.uint8)
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
                      "output": str(args.output), "latency_ms": latency}))
    return 0
