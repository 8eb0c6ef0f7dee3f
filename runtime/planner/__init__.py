"""The planner link: the VLM that decides what to grasp, reached without ever blocking control.

Pieces (one small module each):
  wire.py         msgpack message schema, protocol version, size limits
  images.py       JPEG/PNG encoding of frames for the wire
  replies.py      strict parsing and validation of VLM replies (boxes, booleans, instructions)
  prompts.py      the four DexGraspVLA tasks as chat-completions messages
  vlm_http.py     OpenAI-compatible HTTP client (httpx) with reply-size caps
  vlm_backend.py  the VLM backend: tasks + bounded retries inside a deadline
  local_backend.py  OpenCV colour/shape grounding for the synthetic scene (no VLM)
  server.py       ZeroMQ ROUTER server with a bounded worker pool
  client.py       asynchronous DEALER client with deadlines, heartbeats, socket recovery
  inprocess.py    the same non-blocking API over a backend in this process
  calls.py        PlannerCall / PlannerReply / LinkState shared by both
  security.py     optional CURVE keys and the ZAP allowlist

Importing this package imports only the standard library, numpy and msgpack; zmq, httpx and OpenCV
are imported where they are used.
"""

from runtime.planner.calls import LinkState, Planner, PlannerCall, PlannerReply

__all__ = ["LinkState", "Planner", "PlannerCall", "PlannerReply"]
