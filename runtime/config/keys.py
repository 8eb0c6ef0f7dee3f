"""One rule for every key a config can hold: a key nobody reads is an error with a did-you-mean.

The schema's own sections get this from pydantic (extra="forbid", formatted by the loader); the
sections and options handed on to other components (telemetry, recording, bridge options) are
checked here against what those components accept: the fields of their config dataclass, or the
keyword parameters of the function the options are passed to. Nothing is ever dropped silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

from runtime.errors import ConfigError


def unknown_key(where: str, key: str, known: Iterable[str]) -> str:
    """`WHERE.KEY: unknown key; did you mean 'X'?` (or the known keys when nothing is close)."""
    known = sorted(known)
    hint = difflib.get_close_matches(key, known, n=1)
    suffix = f"; did you mean '{hint[0]}'?" if hint else (f"; known keys: {', '.join(known)}" if known else "")
    field = f"{where}.{key}" if where else key
    return f"{field}: unknown key{suffix}"


def check_keys(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """ConfigError, one line per unknown key, when `given` holds keys outside `known`."""
    known = set(known)
    bad = sorted(set(given) - known, key=str)
    if bad:
        raise ConfigError("\n".join(unknown_key(where, str(k), known) for k in bad))


def check_dataclass_keys(raw: Any, cls: type, where: str) -> None:
    """Check a section against the fields of its dataclass, recursing into nested dataclass fields."""
    if not isinstance(raw, dict):
        return  # the component's own validation reports the wrong type
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    check_keys(raw, fields, where)
    for name, value in raw.items():
        nested = _dataclass_in(hints.get(name))
        if nested is not None and isinstance(value, dict):
            check_dataclass_keys(value, nested, f"{where}.{name}")


def check_keywords(fn: Callable, kwargs: dict[str, Any], where: str) -> None:
    """ConfigError when `kwargs` holds a name `fn` does not take (unless it takes **kwargs)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    check_keys(kwargs, known, where)


def _dataclass_in(annotation) -> type | None:
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return annotation
    for arg in typing.get_args(annotation):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return arg
    return None
