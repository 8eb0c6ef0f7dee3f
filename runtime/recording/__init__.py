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
]


def make_recorder(section: dict | RecordingConfig | None, record_dir: str | None = None):
    """A started EpisodeRecorder from the `recording:` section (or `--record DIR`), or None.

    record_dir (from the command line) overrides section['dir']. Starting takes the directory lock
    and quarantines crash leftovers (fast: no checksums).
    """
    if isinstance(section, RecordingConfig):
        cfg = section
    else:
        raw = dict(section or {})
        if record_dir:
            raw["dir"] = str(record_dir)
        if not raw.get("dir"):
            return None
        cfg = RecordingConfig.from_dict(raw)
    return EpisodeRecorder(cfg).start()
