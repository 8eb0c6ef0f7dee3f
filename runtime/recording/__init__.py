"""Episode recording in DexGraspVLA's training layout (zarr format 2) with crash-safe manifests.

EpisodeRecorder is a runtime observer; load_episode / iter_episodes / pack_dataset read recordings
back (verified); salvage_episode recovers the committed prefix of a quarantined one.
"""

from runtime.recording.config import RecordingConfig
from runtime.recording.episode_writer import RecordingError
from runtime.recording.recorder import EpisodeRecorder
from runtime.recording.store import (
    Episode,
    iter_episodes,
    list_episodes,
    list_quarantined,
    load_episode,
    pack_dataset,
    salvage_episode,
)

__all__ = [
    "RecordingConfig", "RecordingError", "EpisodeRecorder", "Episode", "iter_episodes", "list_episodes",
    "list_quarantined", "load_episode", "pack_dataset", "salvage_episode", "make_recorder",
    "cpus_left_by_the_control_loop",
]


def cpus_left_by_the_control_loop(context) -> list[int] | None:
    """The CPUs this process may use minus those control.realtime.cpu_affinity pins the loop to
    (None when the loop is not pinned, or when it would leave the writer nowhere)."""
    import os

    realtime = getattr(getattr(context, "control", None), "realtime", None)
    loop_cpus = getattr(realtime, "cpu_affinity", None)
    if not loop_cpus:
        return None
    left = sorted(os.sched_getaffinity(0) - set(loop_cpus))
    return left or None


def make_recorder(section: dict | RecordingConfig | None, context=None, record_dir: str | None = None):
    """A started EpisodeRecorder from the `recording:` section (or `--record DIR`), or None.

    context: the RuntimeConfig (or a directory path, taken as record_dir). From a RuntimeConfig the
    robot's arm limits become `arm_joint_limits` unless the section sets them or sets
    `raw_joint_units: true`, so state/action are stored in the model's [-1, 1] arm space like
    upstream's recordings. record_dir (from the command line) overrides section['dir'].
    Starting takes the directory lock and quarantines crash leftovers (fast: no checksums).
    """
    import os

    if isinstance(context, (str, os.PathLike)):
        context, record_dir = None, str(context)
    from runtime.recording.provenance import build_provenance

    if isinstance(section, RecordingConfig):
        return EpisodeRecorder(section, provenance=build_provenance(context)).start()
    raw = dict(section or {})
    if record_dir:
        raw["dir"] = str(record_dir)
    if not raw.get("dir"):
        return None
    if raw.get("writer_cpu_affinity") is None:
        raw["writer_cpu_affinity"] = cpus_left_by_the_control_loop(context)
    robot = getattr(context, "robot", None)
    if robot is not None and raw.get("arm_joint_limits") is None and not raw.get("raw_joint_units", False):
        raw["arm_joint_limits"] = {"lower": list(robot.arm_lower_rad), "upper": list(robot.arm_upper_rad)}
    if robot is not None and hasattr(robot, "n_joints"):
        # the config's joint space: a section's own state_dim must agree, or every frame would be dropped
        if raw.get("state_dim") is not None and raw["state_dim"] != robot.n_joints:
            from runtime.errors import ConfigError

            raise ConfigError(f"recording.state_dim: {raw['state_dim']} but the robot has {robot.n_joints} joints "
                              f"({robot.n_arm} arm + {robot.n_hand} hand); leave it out to record the robot's")
        raw["state_dim"] = robot.n_joints
    return EpisodeRecorder(RecordingConfig.from_dict(raw), provenance=build_provenance(context)).start()
