"""`dexgrasp ctl`: command a running runtime over DDS (the same topics ROS 2 tools see)."""

from __future__ import annotations

import argparse
import json
import os

DESCRIPTION = """\
Talk to a running `dexgrasp run` over DDS (needs telemetry.dds.enabled in its config).

examples:
  dexgrasp ctl start "grasp the red cube"     start an episode with this user prompt
  dexgrasp ctl stop                          protective stop (always accepted, never rate-limited)
  dexgrasp ctl clear                         lift a protective stop (does not re-arm)
  dexgrasp ctl arm                           re-enable motion (after clear, a firmware safe-off or link loss)
  dexgrasp ctl save-image --out head.jpg      save the latest head image (rt/dexgrasp/head/image/compressed)
  dexgrasp ctl box 60 40 130 105 --image head.jpg
                                             give the target box by hand in head.jpg's pixels (scaled
                                             to the head camera's size); without --image: camera pixels.
                                             Alias: bbox. Checked like a planner box (inside the image,
                                             not tiny, not the whole frame); a refusal prints the reason.
  dexgrasp ctl status                        print the latest status JSON (finds `dexgrasp demo` as is)
  dexgrasp ctl status --domain-id 7 --interface eth0

Network: with no --interface/--peer/--no-multicast and no CYCLONEDDS_URI, ctl stays on this host
(--interface loopback: lo, no multicast, peer 127.0.0.1), where configs/sim.yaml publishes. Give
--interface eth0 (or set CYCLONEDDS_URI, like ROS 2) to reach a robot on the network. The domain id
defaults to $DEXGRASP_DDS_DOMAIN_ID, else 0, like a runtime config that names none. Exit code 0 = accepted, 1 = rejected or
dropped (the reason is printed), 2 = no runtime answered within --timeout-s.

Every command carries a random sender id, a sequence number and the runtime's session (read
from its status), so a recorded command cannot be replayed. That is not authentication: on a
shared network use DDS-Security (telemetry.dds.security; docs/dds_recording.md).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ctl", help="command a running runtime over DDS (start/stop/clear/arm/bbox/status)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["start", "stop", "clear", "arm", "box", "bbox", "save-image", "status"],
                   help="what to do")
    p.add_argument("args", nargs="*", help="start: the prompt; box: x1 y1 x2 y2")
    p.add_argument("--out", default=None, help="save-image: where to write the JPEG (e.g. head.jpg)")
    p.add_argument("--image", default=None,
                   help="box: the saved image the coordinates were picked on (scaled to the head camera size)")
    p.add_argument("--camera", default="head", choices=["head", "wrist", "mask"], help="save-image: which image")
    p.add_argument("--domain-id", type=int, default=None,
                   help="DDS domain id (default $DEXGRASP_DDS_DOMAIN_ID, else 0)")
    p.add_argument("--timeout-s", type=float, default=5.0, help="how long to wait for the runtime (default 5)")
    p.add_argument("--interface", default=None,
                   help="network interface for DDS, e.g. eth0 or loopback (the default when no network "
                        "flag is given and CYCLONEDDS_URI is unset)")
    p.add_argument("--no-multicast", action="store_true", help="disable multicast discovery (use --peer)")
    p.add_argument("--peer", action="append", default=[], help="unicast discovery peer address (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    from runtime.errors import ConfigError, DeviceNotConnectedError
    from runtime.telemetry.client import DdsClient
    from runtime.telemetry.config import LOOPBACK, DdsConfig

    raw: dict = {"enabled": True, "interface": args.interface,
                 "allow_multicast": False if args.no_multicast else None, "peers": list(args.peer)}
    if args.interface is None and not args.peer and not args.no_multicast and not os.environ.get("CYCLONEDDS_URI"):
        raw["interface"] = LOOPBACK  # where configs/sim.yaml publishes: `ctl status` finds the demo as is
    if args.domain_id is not None:
        raw["domain_id"] = args.domain_id
    cfg = DdsConfig.from_dict(raw, "dexgrasp ctl")
    fields: dict = {}
    if args.action == "start":
        if not args.args:
            raise ConfigError('dexgrasp ctl start needs a prompt, e.g. dexgrasp ctl start "grasp the red cube"')
        fields["prompt"] = " ".join(args.args)
    elif args.action in ("box", "bbox"):
        try:
            fields["bbox"] = [float(v) for v in args.args]
        except ValueError as exc:
            raise ConfigError(f"dexgrasp ctl {args.action}: coordinates must be numbers ({exc})") from exc
        if len(fields["bbox"]) != 4:
            raise ConfigError(f"dexgrasp ctl {args.action} needs 4 numbers x1 y1 x2 y2, got {args.args}")
    elif args.action == "save-image":
        if args.args or not args.out:
            raise ConfigError("dexgrasp ctl save-image takes no arguments and needs --out FILE, e.g. --out head.jpg")
    elif args.args:
        raise ConfigError(f"dexgrasp ctl {args.action} takes no arguments, got {args.args}")

    with DdsClient(cfg) as client:
        if args.action == "status":
            doc = client.latest_status(args.timeout_s)
            if doc is None:
                raise DeviceNotConnectedError(
                    f"no status on rt/dexgrasp/status within {args.timeout_s:.1f} s on domain {cfg.domain_id}"
                )
            print(json.dumps(doc, indent=2, sort_keys=True))
            return 0
        if args.action == "save-image":
            return _save_image(client, args)
        if not client.wait_for_runtime(args.timeout_s):
            raise DeviceNotConnectedError(
                f"no runtime is reading rt/dexgrasp/command on domain {cfg.domain_id} "
                f"(waited {args.timeout_s:.1f} s); is `dexgrasp run` up with telemetry.dds.enabled?"
            )
        name = "manual_bbox" if args.action in ("box", "bbox") else args.action
        if name == "manual_bbox" and args.image:
            fields["bbox"] = _scale_box(client, fields["bbox"], args.image, args.timeout_s)
        cmd_id = client.send(name, session_timeout_s=args.timeout_s, **fields)
        result = client.wait_result(cmd_id, args.timeout_s)
        reason = f": {result['reason']}" if result.get("reason") else ""
        print(f"{name} {result['result']}{reason}")
        return 0 if result["result"] == "accepted" else 1


def _save_image(client, args) -> int:
    """Write the next image from the camera's topic to --out as it came (JPEG); print its size."""
    from pathlib import Path

    from runtime.errors import ConfigError, DeviceNotConnectedError
    from runtime.telemetry import qos
    from runtime.telemetry.images import decode_jpeg

    msg = client.latest_image(args.camera, args.timeout_s)
    if msg is None:
        raise DeviceNotConnectedError(
            f"no image on {qos.image_topic(args.camera)} within {args.timeout_s:.1f} s on domain "
            f"{client.cfg.domain_id}; is the runtime up with telemetry.dds.images.enabled?"
        )
    data = bytes(msg.data)
    h, w = decode_jpeg(data).shape[:2]
    out = Path(args.out)
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"dexgrasp ctl save-image: cannot write {out}: {exc.strerror}") from exc
    print(f"saved {args.camera} image {w}x{h} to {out} (box coordinates for `dexgrasp ctl box` are in "
          "this image's pixels when it is not downscaled; see docs/operator.md)")
    return 0


def _scale_box(client, box: list[float], image: str, timeout_s: float) -> list[float]:
    """`box` picked on the saved (possibly downscaled) `image`, in head-camera pixels."""
    from pathlib import Path

    from runtime.errors import ConfigError, DeviceNotConnectedError
    from runtime.telemetry.images import decode_jpeg

    try:
        h, w = decode_jpeg(Path(image).read_bytes()).shape[:2]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dexgrasp ctl box --image {image}: cannot read it as a JPEG ({exc})") from exc
    doc = client.latest_status(timeout_s) or {}
    size = doc.get("head_image_size")
    if not size:
        raise DeviceNotConnectedError("the runtime's status has no head_image_size yet (no head frame seen)")
    sx, sy = size[0] / w, size[1] / h
    return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
