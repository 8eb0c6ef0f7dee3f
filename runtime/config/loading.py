"""Load a runtime config from YAML with errors a user can act on.

`load_config("configs/sim.yaml")` or `load_config("sim")` (a preset: a file in the repo's
configs/ directory). Every problem becomes one line `FILE: FIELD: what is wrong, got VALUE`;
unknown keys and preset names get a did-you-mean. A key given twice in one mapping (at any depth)
and an empty file are errors: YAML would otherwise let the second copy of a section silently
replace the first, and an empty file would silently be the full sim config.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from runtime.config.keys import unknown_key
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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (YAML's default: the last one wins)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` overrides on purpose
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, line, seen[key])
                    seen[key] = line
                except TypeError:  # an unhashable key: BaseConstructor reports it
                    continue
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first at line {first}); "
                         "the second would replace the first")


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The top-level mapping of a config file. ConfigError for bad YAML, duplicate keys, an empty
    file or a top level that is not a mapping."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        raise ConfigError(f"{source}: the file is empty (no sections); write at least `name: NAME` "
                          "to run with the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> RuntimeConfig:
    """Read, merge `overrides` (nested dict) and validate. Raises ConfigError naming file and field."""
    path = resolve_config_path(name_or_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    data = parse_yaml(text, str(path))
    if overrides:
        data = deep_merge(data, overrides)
    return config_from_dict(data, source=str(path))


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> RuntimeConfig:
    try:
        return RuntimeConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {line}" for err in exc.errors() for line in format_error(err).splitlines()]
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
    "finite_number": lambda c: "must be a finite number",
}


def format_error(err: dict) -> str:
    loc = [str(x) for x in err["loc"]]
    field = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return unknown_key(".".join(loc[:-1]), loc[-1], _fields_at(loc[:-1]))
    if kind == "missing":
        return f"{field}: required field is missing"
    ctx = err.get("ctx") or {}
    text = _MESSAGES[kind](ctx) if kind in _MESSAGES else _clean(err["msg"])
    if _names_own_field(text, loc):
        return text  # a cross-field check (or a component's model) that names the field itself
    value = err.get("input")
    if ", got " in text or isinstance(value, dict):
        return f"{field}: {text}"
    return f"{field}: {text}, got {value!r}"


def _names_own_field(text: str, loc: list[str]) -> bool:
    """True when `text` starts with `FIELD:` for a field at or below `loc` (e.g. robot.home_positions)."""
    head = text.split(":", 1)[0]
    if ":" not in text or " " in head:
        return False
    prefix = ".".join(loc)
    return not prefix or head == prefix or head.startswith(prefix + ".")


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
