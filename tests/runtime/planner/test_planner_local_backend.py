"""The local OpenCV backend on the synthetic scene (runtime/cameras/scene.py), in-process and via ZMQ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.cameras import scene as scene_module
from runtime.cameras.scene import HeadRenderer, TabletopScene, WristRenderer, arm_points, default_state
from runtime.planner import wire
from runtime.planner.client import PlannerClient
from runtime.planner.images import encode_image
from runtime.planner.local_backend import LocalBackend, detect_objects, parse_query
from runtime.planner.replies import ReplyError
from runtime.planner.server import PlannerServer


def ik(x, y, z, closed):
    """Joint vector putting the sim's wrist at (x, y, z) (its planar two-link arm, equal links)."""
    q = default_state()
    sx, sy, sz = scene_module.SHOULDER_XYZ
    link = scene_module.ARM_LINK_M[0]
    q[0] = math.atan2(x - sx, y - sy) - getattr(scene_module, "BASE_YAW_OFFSET", 0.0)
    r, dz = math.hypot(x - sx, y - sy), z - sz
    d = math.hypot(r, dz)
    beta = math.acos(min(1.0, d / (2 * link)))
    phi = math.atan2(dz, r)
    a1, a2 = phi + beta, phi - beta
    q[1], q[3] = a1 - math.pi / 2, a2 - a1
    q[7:13] = 0.0 if closed else 1.0
    wrist = arm_points(q)[0][2]
    assert np.allclose(wrist, (x, y, z), atol=0.01), f"sim FK changed: wanted {(x, y, z)}, got {wrist}"
    return q


def render(scene):
    snap = scene.snapshot()
    labels = np.zeros((480, 640), np.int32)
    return HeadRenderer().render(snap, labels), WristRenderer().render(snap), labels


def truth_box(labels, label):
    ys, xs = np.nonzero(labels == label)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def req(task, images, timeout_s=2.0, **text):
    wimgs = {r: encode_image(img, fmt="png", image_id=f"id-{r}") for r, img in images.items()}
    return wire.TaskRequest("r", "e", task, timeout_s, wimgs, **text)


@pytest.fixture(scope="module")
def home_scene():
    scene = TabletopScene()
    head, wrist, labels = render(scene)
    return scene, head, wrist, labels


@pytest.mark.parametrize("name, shape", [("red cube", "square"), ("green ball", "circle"),
                                         ("blue cube", "square"), ("yellow cylinder", "rectangle")])
def test_every_scene_object_found_with_its_colour_and_shape(home_scene, name, shape):
    scene, head, _, labels = home_scene
    colour = name.split()[0]
    (det,) = [d for d in detect_objects(head) if d.colour == colour]
    assert det.shape == shape
    assert iou(det.box, truth_box(labels, scene.labels[name])) > 0.8


def test_query_words():
    q = parse_query("Grasp the RED blocks and the violet ball on the left")
    assert q.colours == {"red", "purple"} and q.shapes == {"square", "circle"} and q.position == "left"
    assert parse_query("clear the table").colours == frozenset()


@pytest.mark.parametrize("prompt, target", [
    ("grasp the red block", "red cube"),
    ("pick up the green ball", "green ball"),
    ("the yellow cylinder", "yellow cylinder"),
    ("clear the table", "blue cube"),  # no words: rightmost object first (upstream's preference)
    ("grasp a cube on the left", "red cube"),
])
def test_instruction_then_bbox_grounds_the_prompt(home_scene, prompt, target):
    scene, head, _, labels = home_scene
    backend = LocalBackend()
    instr = backend.run(req("instruction", {"initial_head": head, "head": head}, prompt=prompt), 1e18)["instruction"]
    assert target.split()[0] in instr
    out = backend.run(req("bbox", {"head": head}, instruction=instr), 1e18)
    assert iou(out["bbox"], truth_box(labels, scene.labels[target])) > 0.8
    assert out["image_id"] == "id-head" and out["image_size"] == [640, 480]


def test_missing_object_is_an_invalid_reply_not_a_guess(home_scene):
    _, head, _, _ = home_scene
    with pytest.raises(ReplyError, match="no object matching"):
        LocalBackend().run(req("bbox", {"head": head}, instruction="the purple pyramid"), 1e18)


def reachable(o) -> bool:
    sx, sy, sz = scene_module.SHOULDER_XYZ
    return math.hypot(math.hypot(o.x - sx, o.y - sy), 0.05 - sz) < 1.9 * scene_module.ARM_LINK_M[0]


def test_verify_and_complete_follow_a_real_grasp_in_the_sim():
    state = {"q": default_state()}
    scene = TabletopScene(state_fn=lambda: state["q"])
    names = [n for n in scene.labels if n.endswith("cube") and reachable(scene.object(n))]
    assert names, "no cube within the sim arm's reach"
    name = names[0]
    cube = scene.object(name)
    head0, wrist0, _ = render(scene)
    backend = LocalBackend()
    verify = lambda head, wrist: backend.run(  # noqa: E731
        req("verify", {"head": head, "wrist": wrist}, instruction=f"pick up the {name}"), 1e18)
    complete = lambda head: backend.run(  # noqa: E731
        req("complete", {"initial_head": head0, "head": head}, prompt=f"put away the {name}"), 1e18)
    assert verify(head0, wrist0)["success"] is False
    assert complete(head0)["completed"] is False
    # Reach down to the cube, close the hand, lift.
    state["q"] = ik(cube.x, cube.y, 0.05, closed=False)
    render(scene)
    state["q"] = ik(cube.x, cube.y, 0.05, closed=True)
    render(scene)
    assert scene.held == name
    state["q"] = ik(cube.x, cube.y, 0.25, closed=True)
    head1, wrist1, _ = render(scene)
    assert verify(head1, wrist1)["success"] is True
    # Carry it away (off the table, out of the head view) and the prompt is complete.
    state["q"] = ik(cube.x, cube.y, 0.25, closed=False)
    render(scene)
    scene.place(name, 5.0, 5.0)
    state["q"] = default_state()
    head2, _, _ = render(scene)
    assert complete(head2)["completed"] is True


def test_local_backend_behind_the_zmq_server_with_downscaled_images(home_scene):
    scene, head, _, labels = home_scene
    with PlannerServer(LocalBackend(), "tcp://127.0.0.1:*") as server, \
            PlannerClient(server.endpoint, max_side_px=320, image_format="png",
                          heartbeat_period_s=0.1, liveness_s=1.0) as client:
        assert client.wait_connected(3.0) and client.server_info["backend"] == "local"
        call = client.submit("bbox", {"head": head}, episode_id="e", timeout_s=3.0, instruction="the red cube")
        reply = call.wait(5.0)
        assert reply.ok, reply.error_message
        assert reply.result["image_size"] == [640, 480]  # sent at 320x240, answered in camera pixels
        assert iou(reply.result["bbox"], truth_box(labels, scene.labels["red cube"])) > 0.7
