"""Key check of `planner.options` at load, against what runtime/episode/app_glue.py hands each
sub-mapping to (EpisodeConfig, AppActuator, LocalBackend, PlannerClient, CurveClientConfig).

app_glue raises on unknown keys too, but only when the runtime builds the episode; checking at load
gives the same did-you-mean as every other section, before anything starts. Imports are lazy: a
config without planner options imports none of this.
"""

from __future__ import annotations

from typing import Any

from runtime.config.keys import check_dataclass_keys, check_keys, check_keywords


def check_planner_options(options: dict[str, Any]) -> None:
    """ConfigError naming the first level with an unknown key (`planner.options.client.x: ...`)."""
    from runtime.episode.app_glue import _KNOWN_OPTIONS, AppActuator
    from runtime.episode.machine import EpisodeConfig

    check_keys(options, _KNOWN_OPTIONS, "planner.options")
    sections = {k: v for k, v in options.items() if isinstance(v, dict) and v}
    if "episode" in sections:
        check_dataclass_keys(sections["episode"], EpisodeConfig, "planner.options.episode")
    if "grasp" in sections:
        check_keywords(AppActuator.__init__, sections["grasp"], "planner.options.grasp")
    if "local" in sections:
        from runtime.planner.local_backend import LocalBackend

        check_keywords(LocalBackend.__init__, sections["local"], "planner.options.local")
    if "client" in sections:
        from runtime.planner.client import PlannerClient

        check_keywords(PlannerClient.__init__, sections["client"], "planner.options.client")
    if "curve" in sections:
        from runtime.planner.security import CurveClientConfig

        check_dataclass_keys(sections["curve"], CurveClientConfig, "planner.options.curve")
