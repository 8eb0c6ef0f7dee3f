"""One RobotLink over several: e.g. the arm over ROS 2 and the hand over the serial bridge.

The runtime sees one joint vector in its own order (robot.joint_names); each part owns some of
those joints by name. A part's own vector may be wider than what it owns (this project's firmware
always carries 13 joints): the joints it does not own are sent as that part's own last measured
positions, so they hold. Arming is all-or-nothing (a part that refuses disarms the ones already
armed); disarm / protective_stop / clear_stop reach every part even if one raises (the first error
is raised after all were tried). State is fresh only when every part's is; its stamp is the
oldest part's, so the loop's staleness check covers the slowest link.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.errors import ConfigError, StaleDataError
from runtime.robot.link import JointState, LinkHealth, link_health

log = logging.getLogger(__name__)


@dataclass
class Part:
    """One link and its joints: `names` is the part's whole vector in its order, `owns` the subset
    (runtime names) it drives for the composite."""

    label: str
    link: object
    names: tuple[str, ...]
    owns: tuple[str, ...]


class CompositeLink:
    """See module docstring. `parts` must own every name of `joint_names` exactly once."""

    def __init__(self, joint_names: Sequence[str], parts: Sequence[Part], clock=None) -> None:
        self.joint_names = tuple(joint_names)
        self.parts = list(parts)
        self.clock = clock if clock is not None else getattr(self.parts[0].link, "clock", None)
        owner: dict[str, str] = {}
        for p in self.parts:
            unknown = [n for n in p.owns if n not in p.names]
            if unknown:
                raise ConfigError(f"robot link '{p.label}' is given joints {unknown} it does not carry {list(p.names)}")
            for n in p.owns:
                if n in owner:
                    raise ConfigError(f"joint '{n}' is assigned to both '{owner[n]}' and '{p.label}'")
                owner[n] = p.label
        missing = [n for n in self.joint_names if n not in owner]
        extra = [n for n in owner if n not in self.joint_names]
        if missing or extra:
            raise ConfigError(f"robot links: joints {missing} have no link" if missing else
                              f"robot links drive joints {extra} that are not in robot.joint_names")
        where = {n: i for i, n in enumerate(self.joint_names)}
        # per part: indices into the part's vector of the owned joints, and into the runtime vector
        self._maps = [(np.array([p.names.index(n) for n in p.owns], dtype=np.intp),
                       np.array([where[n] for n in p.owns], dtype=np.intp)) for p in self.parts]
        self.source = "+".join(p.label for p in self.parts)

    # ---- state ---------------------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        return all(p.link.link_up for p in self.parts)

    @property
    def armed(self) -> bool:
        return all(p.link.armed for p in self.parts)

    @property
    def needs_rearm(self) -> bool:
        return any(getattr(p.link, "needs_rearm", False) for p in self.parts)

    def latest_state(self, max_age_s: float | None = None) -> JointState:
        """Merged state; StaleDataError naming the part whose state is missing or too old."""
        q = np.empty(len(self.joint_names))
        v = np.full(len(self.joint_names), np.nan)
        stamp = np.inf
        for p, (part_idx, rt_idx) in zip(self.parts, self._maps, strict=True):
            try:
                st = p.link.latest_state(max_age_s)
            except StaleDataError as exc:
                raise StaleDataError(f"{p.label}: {exc}") from exc
            q[rt_idx] = np.asarray(st.positions, dtype=np.float64)[part_idx]
            vel = getattr(st, "velocities", None)
            if vel is not None:
                v[rt_idx] = np.asarray(vel, dtype=np.float64)[part_idx]
            s = getattr(st, "stamp", None)
            stamp = min(stamp, st.t_host_receive if s is None else s)
        return JointState(self.joint_names, q, v, float(stamp), self.source)

    # ---- commands ------------------------------------------------------------------------------

    def send_targets(self, positions, t_target: float | None = None) -> np.ndarray:
        """Split by name and send to each part; returns the merged vector of what was sent. A part's
        joints it does not own are sent at its own measured positions (hold)."""
        q = np.asarray(positions, dtype=np.float64)
        if q.shape != (len(self.joint_names),):
            from firmware_bridge.errors import CommandError

            raise CommandError(f"composite link: targets must have shape ({len(self.joint_names)},), got {q.shape}")
        vectors = []
        for p, (part_idx, rt_idx) in zip(self.parts, self._maps, strict=True):
            if len(part_idx) == len(p.names):
                vec = np.empty(len(p.names))
            else:
                vec = np.asarray(p.link.latest_state(None).positions, dtype=np.float64).copy()
            vec[part_idx] = q[rt_idx]
            vectors.append(vec)
        out = q.copy()
        for p, vec, (part_idx, rt_idx) in zip(self.parts, vectors, self._maps, strict=True):
            sent = p.link.send_targets(vec, t_target)
            if sent is not None:
                out[rt_idx] = np.asarray(sent, dtype=np.float64)[part_idx]
        return out

    def arm(self) -> None:
        done = []
        try:
            for p in self.parts:
                p.link.arm()
                done.append(p)
        except BaseException:
            for p in done:
                try:
                    p.link.disarm()
                except Exception as exc:  # noqa: BLE001 - undoing; the arm error is the one raised
                    log.warning("composite link: disarming %s after a failed arm: %s", p.label, exc)
            raise

    def _each(self, method: str) -> None:
        first: BaseException | None = None
        for p in self.parts:
            try:
                getattr(p.link, method)()
            except Exception as exc:  # every part must get the call; the first error is raised
                log.warning("composite link: %s on %s failed: %s", method, p.label, exc)
                first = first or exc
        if first is not None:
            raise first

    def disarm(self) -> None:
        self._each("disarm")

    def protective_stop(self) -> None:
        self._each("protective_stop")

    def clear_stop(self) -> None:
        self._each("clear_stop")

    def connect(self) -> None:
        """Connect each part in order; on a failure close those already connected and re-raise."""
        done = []
        try:
            for p in self.parts:
                p.link.connect()
                done.append(p)
        except BaseException:
            for p in done:
                try:
                    p.link.close()
                except Exception as exc:  # noqa: BLE001
                    log.warning("composite link: closing %s after a failed connect: %s", p.label, exc)
            raise

    def close(self) -> None:
        self._each("close")

    def counters(self) -> dict:
        return {p.label: dict(p.link.counters()) for p in self.parts}

    def health(self) -> LinkHealth:
        parts = [(p.label, link_health(p.link)) for p in self.parts]
        bad = [f"{label}: {h.cause or 'down'}" for label, h in parts if not h.ok]
        return LinkHealth(not bad, self.armed, self.needs_rearm, max(h.state_age_s for _, h in parts),
                          "; ".join(bad), self.counters())
