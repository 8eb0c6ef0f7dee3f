"""`dexgrasp planner serve | ask | keygen`: the planner server, a one-shot query, CURVE keys.

Only the standard library is imported here; zmq, httpx and OpenCV load inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DESCRIPTION = """\
The planner link: a ZeroMQ server beside the VLM, and a one-shot client to test it.

  # on the GPU server, in front of vLLM serving Qwen2.5-VL (OpenAI-compatible API), which must
  # allow two images per prompt: vllm serve MODEL --limit-mm-per-prompt '{"image": 2}'
  # (vLLM before 0.9: --limit-mm-per-prompt image=2)
  dexgrasp planner serve --bind tcp://0.0.0.0:5557 --vlm-url http://localhost:8000/v1 \\
      --model Qwen/Qwen2.5-VL-72B-Instruct --api-key-env VLM_API_KEY --coords qwen2.5-vl
  # without a VLM (OpenCV colour/shape grounding for the synthetic scene):
  dexgrasp planner serve --bind tcp://127.0.0.1:5557 --backend local
  # from the robot or a laptop:
  dexgrasp planner ask --connect tcp://gpu-server:5557 --task bbox --image head.png \\
      --prompt "the red cube"
  # optional CURVE keys: the server's public key goes to robots, robots' public keys to the server
  dexgrasp planner keygen --dir keys --name server
"""

SERVE_HELP = """\
Serve the four DexGraspVLA planner tasks (instruction, bbox, verify, complete) over ZeroMQ.
Example:
  dexgrasp planner serve --bind tcp://0.0.0.0:5557 --vlm-url http://localhost:8000/v1
With CURVE (clients must hold a key listed in keys/allowed):
  dexgrasp planner serve --bind tcp://0.0.0.0:5557 --vlm-url http://localhost:8000/v1 \\
      --curve-secret keys/server.key_secret --curve-allow-dir keys/allowed
"""

ASK_HELP = """\
Send one planner request and print the validated result as one JSON line (exit 1 on failure).
Images per task: instruction/complete: --image = current head, --image2 = initial head (default: same);
bbox: --image = head; verify: --image = head, --image2 = wrist. --prompt is the user prompt for
instruction/complete and the grasping instruction for bbox/verify.
Example:
  dexgrasp planner ask --connect tcp://127.0.0.1:5557 --task bbox --image head.png --prompt "the red cube"
  -> {"bbox": [219, 205, 252, 238], "label": "red cube", "image_size": [640, 480], "rtt_ms": 12.3}
"""


from runtime.cli.argtypes import endpoint, number  # noqa: E402


def register(subparsers) -> None:
    p = subparsers.add_parser("planner", help="planner server / one-shot query / CURVE keys",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="planner_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    s = sub.add_parser("serve", help="run the planner server", description=SERVE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--bind", required=True, type=endpoint, help="ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5557")
    s.add_argument("--backend", choices=("vlm", "local"), default="vlm",
                   help="vlm: an OpenAI-compatible VLM (default); local: OpenCV grounding, no VLM")
    s.add_argument("--vlm-url", help="base URL of the OpenAI-compatible API, e.g. http://localhost:8000/v1")
    s.add_argument("--model", help="model name (default: the first model the server lists)")
    s.add_argument("--api-key-env", help="name of the environment variable holding the API key")
    s.add_argument("--workers", type=number(int, 1, 256), default=2, help="concurrent VLM calls (default 2)")
    s.add_argument("--queue", type=number(int, 0, 100000), default=8, help="requests waiting beyond the workers before 'busy'")
    s.add_argument("--attempts", type=number(int, 1, 100), default=3, help="VLM attempts per request within its deadline")
    s.add_argument("--attempt-timeout-s", type=number(float, 0, 3600, lo_open=True), default=30.0, help="cap on one VLM attempt")
    s.add_argument("--min-attempt-s", type=number(float, 0, 3600), default=0.5,
                   help="a retry starts only with this much of the deadline left (the backoff is shortened to "
                        "leave it); otherwise the last error is reported at once (default 0.5 s)")
    s.add_argument("--max-tokens", type=number(int, 1, 1_000_000), default=256, help="max_tokens per VLM reply")
    s.add_argument("--coords", choices=("pixels", "qwen2.5-vl", "norm1000", "norm1"), default="pixels",
                   help="frame the model writes boxes in: pixels of the sent image (default), qwen2.5-vl "
                        "(pixels of Qwen2.5-VL's resized input, sides multiples of 28), norm1000 (Qwen2-VL), norm1")
    s.add_argument("--vlm-min-pixels", type=number(int, 1, 10**9), default=56 * 56,
                   help="with --coords qwen2.5-vl: the processor's min_pixels (default 3136, Qwen2.5-VL's)")
    s.add_argument("--vlm-max-pixels", type=number(int, 1, 10**9), default=16384 * 28 * 28,
                   help="with --coords qwen2.5-vl: the processor's max_pixels (default 12845056, Qwen2.5-VL's; "
                        "match vLLM's --mm-processor-kwargs if set)")
    s.add_argument("--vlm-max-side", type=int, default=None,
                   help="downscale images to this longer side before sending them to the VLM")
    s.add_argument("--max-message-mb", type=number(float, 0, 4096, lo_open=True), default=8.0, help="largest ZeroMQ message accepted")
    s.add_argument("--curve-secret", help="server secret key file (.key_secret) to enable CURVE")
    s.add_argument("--curve-allow-dir", help="directory of allowed client public keys (*.key)")
    s.set_defaults(func=_serve)

    a = sub.add_parser("ask", help="send one request, print the validated result", description=ASK_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--connect", required=True, type=endpoint, help="planner server endpoint, e.g. tcp://127.0.0.1:5557")
    a.add_argument("--task", required=True, choices=("instruction", "bbox", "verify", "complete"))
    a.add_argument("--image", required=True, help="head camera image file (PNG/JPEG)")
    a.add_argument("--image2", help="second image: initial head (instruction/complete) or wrist (verify)")
    a.add_argument("--prompt", default="", help="user prompt or grasping instruction (see above)")
    a.add_argument("--timeout-s", type=number(float, 0, 3600, lo_open=True), default=30.0,
                   help="the request's deadline, 0 < s <= 3600 (default 30 s), counted from the handshake")
    a.add_argument("--connect-timeout-s", type=number(float, 0, 3600, lo_open=True), default=30.0,
                   help="how long to wait for the server's handshake first (a server still starting up); "
                        "not part of --timeout-s (default 30 s)")
    a.add_argument("--max-side", type=int, default=None, help="downscale images to this longer side before sending")
    a.add_argument("--curve-secret", help="this client's secret key file (.key_secret)")
    a.add_argument("--curve-server-key", help="the server's public key file (.key) to pin")
    a.set_defaults(func=_ask)

    k = sub.add_parser("keygen", help="create a CURVE key pair",
                       description="Create NAME.key (public) and NAME.key_secret in DIR.\n"
                                   "Example: dexgrasp planner keygen --dir keys --name robot1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("--dir", required=True)
    k.add_argument("--name", required=True)
    k.set_defaults(func=_keygen)


def _serve(args) -> int:
    import signal
    import threading

    from runtime.errors import ConfigError
    from runtime.planner.security import CurveServerConfig
    from runtime.planner.server import PlannerServer

    if args.backend == "local":
        from runtime.planner.local_backend import LocalBackend

        backend = LocalBackend()
    else:
        if not args.vlm_url:
            raise ConfigError("--vlm-url is required with --backend vlm (or use --backend local)")
        from runtime.planner.frames import BoxFrame
        from runtime.planner.vlm_backend import VLMBackend
        from runtime.planner.vlm_http import OpenAIChatClient

        if args.vlm_min_pixels > args.vlm_max_pixels:
            raise ConfigError(f"--vlm-min-pixels ({args.vlm_min_pixels}) exceeds --vlm-max-pixels ({args.vlm_max_pixels})")
        frame = BoxFrame(args.coords, args.vlm_min_pixels, args.vlm_max_pixels)
        api_key = None
        if args.api_key_env:
            api_key = os.environ.get(args.api_key_env)
            if not api_key:
                raise ConfigError(f"environment variable {args.api_key_env} (--api-key-env) is not set")
        client = OpenAIChatClient(args.vlm_url, model=args.model, api_key=api_key, max_tokens=args.max_tokens)
        model = client.resolve_model()
        print(f"planner: VLM {args.vlm_url} model {model}", flush=True)
        backend = VLMBackend(client, max_attempts=args.attempts, attempt_timeout_s=args.attempt_timeout_s,
                             min_attempt_s=args.min_attempt_s,
                             coords=frame, vlm_max_side_px=args.vlm_max_side)
    curve = None
    if args.curve_secret or args.curve_allow_dir:
        if not (args.curve_secret and args.curve_allow_dir):
            raise ConfigError("CURVE needs both --curve-secret and --curve-allow-dir")
        curve = CurveServerConfig(args.curve_secret, args.curve_allow_dir)
    server = PlannerServer(backend, args.bind, workers=args.workers, queue_size=args.queue,
                           max_message_bytes=int(args.max_message_mb * 1024 * 1024), curve=curve)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # also when started in the background (SIGINT ignored there)
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"planner: serving {backend.name} backend on {server.endpoint}"
          f"{' (CURVE)' if curve else ''}; Ctrl-C to stop", flush=True)
    try:
        server.serve_forever(stop)
    finally:
        backend.close()
    print(f"planner: stopped; {json.dumps(server.counters)}", flush=True)
    return 0


def _ask(args) -> int:
    import cv2

    from runtime.errors import ConfigError
    from runtime.planner.client import PlannerClient
    from runtime.planner.security import CurveClientConfig

    def read(path: str):
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"cannot read image file '{path}' (missing or not an image)")
        return img

    head = read(args.image)
    second = read(args.image2) if args.image2 else None
    if args.task == "verify" and second is None:
        raise ConfigError("--task verify needs --image2 (the wrist camera image)")
    if not args.prompt.strip():
        raise ConfigError(f"--task {args.task} needs --prompt "
                          f"({'the user prompt' if args.task in ('instruction', 'complete') else 'the grasping instruction'})")
    images = {"head": head}
    if args.task in ("instruction", "complete"):
        images["initial_head"] = second if second is not None else head
    elif args.task == "verify":
        images["wrist"] = second
    text = {"prompt": args.prompt} if args.task in ("instruction", "complete") else {"instruction": args.prompt}
    curve = None
    if args.curve_secret or args.curve_server_key:
        if not (args.curve_secret and args.curve_server_key):
            raise ConfigError("CURVE needs both --curve-secret and --curve-server-key")
        curve = CurveClientConfig(args.curve_secret, args.curve_server_key)
    liveness = max(0.4, min(5.0, args.timeout_s / 2))
    # The deadline starts once the server has answered the handshake: a server still starting (slow
    # imports on a loaded machine) must not eat the request's budget, or the same request answers
    # or fails depending on how long start-up took. Reconnect tries stay at 0.1 s to notice it soon.
    with PlannerClient(args.connect, curve=curve, max_side_px=args.max_side, heartbeat_period_s=liveness / 4,
                       liveness_s=liveness, reconnect_max_s=0.1) as client:
        if not client.wait_connected(args.connect_timeout_s):
            why = f": {client.link_error}" if client.link_error else ""
            print(f"dexgrasp planner ask: no planner server answered the handshake at {args.connect} within "
                  f"{args.connect_timeout_s:g} s (--connect-timeout-s; link {client.state.value}{why}); "
                  "is `dexgrasp planner serve` running there?", file=sys.stderr)
            return 1
        call = client.submit(args.task, images, episode_id="cli", timeout_s=args.timeout_s, **text)
        reply = call.wait(args.timeout_s + 1.0)
        state = client.state.value
        if client.link_error:
            state += f": {client.link_error}"
    if reply is None or not reply.ok:
        code = reply.error_code if reply else "timeout"
        message = reply.error_message if reply else "no answer"
        print(f"dexgrasp planner ask: {args.task} failed ({code}): {message} [link: {state}, {args.connect}]",
              file=sys.stderr)
        return 1
    result = {k: v for k, v in reply.result.items() if k != "image_id"}
    result["rtt_ms"] = round(reply.rtt_s * 1e3, 2) if reply.rtt_s is not None else None
    print(json.dumps(result), flush=True)
    return 0


def _keygen(args) -> int:
    from runtime.planner.security import generate_keypair

    public, secret = generate_keypair(args.dir, args.name)
    print(f"public key: {public}\nsecret key: {secret} (keep private)")
    return 0
