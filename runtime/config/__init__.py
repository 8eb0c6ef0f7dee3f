"""Runtime configuration: schema (typed sections, units in names) and loading with clear errors."""

from runtime.config.loading import (
    CONFIGS_DIR,
    config_from_dict,
    load_config,
    preset_names,
    resolve_config_path,
)
from runtime.config.schema import N_JOINTS, RuntimeConfig

__all__ = [
    "CONFIGS_DIR", "N_JOINTS", "RuntimeConfig", "config_from_dict", "load_config", "preset_names",
    "resolve_config_path",
]
