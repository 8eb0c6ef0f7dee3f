"""Load a runtime config from YAML with errors a user can act on.

`load_config("configs/sim.yaml")` or `load_config("sim")` (a preset: a file in the repo's
configs/ directory). Every problem becomes one line `FILE: FIELD: what is wrong, got VALUE`;
unknown keys and preset names get a did-you-mean.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from runtime.config.schema import RuntimeConfig
from runtime.errors import ConfigError

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


def preset_names() -> list[str]:
    """Names of the configs shipped in configs/ (usable as `--config NAME`)."""
    if not CONFIGS_DIR.is_dir():
        return []
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given if it exists, else a preset name in configs/; ConfigError with did-you-mean."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.suffix in ("", ".yaml", ".yml") and p.parent == Path("."):
        candidate = CONFIGS_DIR / f"{p.stem}.yaml"
        if candidate.is_file():
            return candidate
    names = preset_names()
    hint = difflib.get_close_matches(p.stem, names, n=1)
    msg = f"config '{name_or_path}' not found (no such file, and not a preset in {CONFIGS_DIR})"
    if hint:
        msg += f"; did you mean '{hint[0]}'?"
    elif names:
        msg += f"; presets: {', '.join(names)}"
    raise ConfigError(msg)


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> RuntimeConfig:
    """Read, merge `overrides` (nested dict) and validate. Raises ConfigError naming file and field."""
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    if overrides:
        data = deep_merge(data, overrides)
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> RuntimeConfig:
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {format_error(err)}" for err in exc.errors()]
        raise ConfigError("\n".join(lines) if len(lines) > 1 else lines[0]) from None


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


_MESSAGES = {
    "greater_than": lambda c: f"must be > {_num(c['gt'])}",
    "greater_than_equal": lambda c: f"must be >= {_num(c['ge'])}",
    "less_than": lambda c: f"must be < {_num(c['lt'])}",
    "less_than_equal": lambda c: f"must be <= {_num(c['le'])}",
    "literal_error": lambda c: f"must be one of {c['expected']}",
}


def format_error(err: dict) -> str:
    loc = [str(x) for x in err["loc"]]
    field = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        suffix = f"; did you mean '{hint[0]}'?" if hint else (f"; known keys: {', '.join(known)}" if known else "")
        return f"{field}: unknown key{suffix}"
    if kind == "missing":
        return f"{field}: required field is missing"
    ctx = err.get("ctx") or {}
    text = _MESSAGES[kind](ctx) if kind in _MESSAGES else _clean(err["msg"])
    value = err.get("input")
    if ", got " in text or isinstance(value, dict):
        return f"{field}: {text}"
    return f"{field}: {text}, got {value!r}"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg[:1].lower() + msg[1:]


def _fields_at(loc: list[str]) -> list[str]:
    """Field names of the model at `loc` inside RuntimeConfig (for did-you-mean)."""
    model: type[BaseModel] | None = RuntimeConfig
    for part in loc:
        if model is None or part not in model.model_fields:
            return []
        ann = model.model_fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return sorted(model.model_fields) if model is not None else []
