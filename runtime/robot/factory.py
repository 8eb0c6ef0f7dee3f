"""bridge.kind ros2 -> the arm over ROS 2 (+ the hand over its own link) as one RobotLink.

Called by runtime.config.components.make_bridge. The arm is connected first (the controller's
joint names are checked before the serial hand is even opened); a failure closes what was opened.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from runtime.clock import Clock
from runtime.robot.composite import CompositeLink, Part
from runtime.robot.config import check_ros2_joints
from runtime.robot.ros2 import Ros2ArmLink


def make_ros2_link(cfg, clock: Clock, make_bridge: Callable):
    """A BridgeHandle whose bridge is a CompositeLink (arm: Ros2ArmLink, hand: bridge.ros2.hand)."""
    from runtime.config.components import BridgeHandle

    opts = cfg.bridge.ros2
    names = list(cfg.robot.joint_names)
    check_ros2_joints(opts, names)
    arm_names = tuple(opts.joints)
    where = {n: i for i, n in enumerate(names)}
    idx = [where[n] for n in arm_names]
    lower, upper = np.asarray(cfg.robot.lower)[idx], np.asarray(cfg.robot.upper)[idx]
    arm = Ros2ArmLink(arm_names, tuple(opts.joints.values()), controller=opts.controller,
                      command_type=opts.command_type, state_topic=opts.state_topic, domain_id=opts.domain_id,
                      dds=opts.dds_config(), state_max_age_s=opts.state_max_age_s, state_qos=opts.state_qos,
                      connect_timeout_s=opts.connect_timeout_s, min_time_from_start_s=opts.min_time_from_start_s,
                      require_subscriber=opts.require_subscriber, lower=lower, upper=upper, clock=clock)
    arm.connect()
    parts = [Part("arm", arm, arm_names, arm_names)]
    closers: list = []
    desc = f"ROS 2 arm ({opts.controller}, {opts.command_type}, domain {opts.domain_id})"
    if opts.hand != "none":
        try:
            hand_cfg = cfg.model_copy(update={"bridge": cfg.bridge.model_copy(update={"kind": opts.hand})})
            hand = make_bridge(hand_cfg, clock)
        except BaseException:
            arm.close()
            raise
        owns = tuple(n for n in names if n not in opts.joints)
        parts.append(Part("hand", hand.bridge, tuple(names), owns))
        closers = hand.closers
        desc += f" + hand over {hand.description}"
    return BridgeHandle(CompositeLink(names, parts, clock), closers, desc)
