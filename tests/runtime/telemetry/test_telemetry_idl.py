"""The checked-in .idl files and the Python IdlStruct types must describe the same wire types."""

import re
import typing
from pathlib import Path

import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")

from runtime.telemetry import types  # noqa: E402

# IDL type spelling -> the annotation our dataclasses use
IDL_TO_PY = {
    "int32": "int32", "uint32": "uint32", "double": "float64", "string": "str",
    "sequence<string>": "sequence[str]", "sequence<double>": "sequence[float64]",
    "octet": "byte", "sequence<uint8>": "sequence[uint8]",
}


def parse_idl(path: Path) -> dict[str, list[tuple[str, str]]]:
    """{qualified struct name: [(member type, member name)]} for one IDL file (our subset of IDL)."""
    text = re.sub(r"//[^\n]*", "", path.read_text())
    structs: dict[str, list[tuple[str, str]]] = {}
    scope: list[str] = []
    current: str | None = None
    for token in re.finditer(r"module\s+(\w+)\s*\{|struct\s+(\w+)\s*\{|\}\s*;|([\w:<>]+)\s+(\w+)\s*;", text):
        module, struct, member_type, member_name = token.groups()
        if module:
            scope.append(module)
        elif struct:
            current = "::".join(scope + [struct])
            structs[current] = []
        elif member_type:
            structs[current].append((member_type, member_name))
        elif current is not None:
            current = None
        else:
            scope.pop()
    return structs


def spell(annotation) -> str:
    """How a dataclass member annotation is spelled in IDL_TO_PY's right-hand side."""
    if typing.get_origin(annotation) is typing.Annotated:
        meta = annotation.__metadata__[0]
        sub = getattr(meta, "subtype", None)
        if hasattr(sub, "__idl_typename__"):  # a sequence of structs: spelled like the IDL
            return f"sequence<{sub.__idl_typename__}>"
        return meta if isinstance(meta, str) else repr(meta)  # 'int32' / sequence[str]
    if annotation is str:
        return "str"
    if hasattr(annotation, "__idl_typename__"):
        return annotation.__idl_typename__
    return repr(annotation)


def python_fields(cls) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(spell(hints[name]), name) for name in cls.__dataclass_fields__]


@pytest.mark.parametrize("cls", list(types.IDL_FILES), ids=lambda c: c.__name__)
def test_python_type_matches_checked_in_idl(cls):
    structs = parse_idl(types.IDL_DIR / types.IDL_FILES[cls])
    typename = cls.__idl_typename__
    assert typename in structs, f"{typename} not declared in {types.IDL_FILES[cls]} (found {list(structs)})"
    idl_members = structs[typename]
    py_members = python_fields(cls)
    assert [n for _, n in idl_members] == [n for _, n in py_members]
    for (idl_t, name), (py_t, _) in zip(idl_members, py_members, strict=True):
        expected = IDL_TO_PY.get(idl_t, idl_t)  # nested structs are spelled by qualified name in both
        assert expected == py_t, f"{typename}.{name}: IDL {idl_t!r} vs Python {py_t!r}"


def test_typenames_follow_ros2_dds_naming():
    for cls in types.IDL_FILES:
        pkg, msg, dds, name = cls.__idl_typename__.split("::")
        assert (msg, dds) == ("msg", "dds_") and name.endswith("_"), cls.__idl_typename__


def test_includes_resolve():
    for rel in types.IDL_FILES.values():
        for inc in re.findall(r'#include\s+"([^"]+)"', (types.IDL_DIR / rel).read_text()):
            assert (types.IDL_DIR / inc).is_file(), f"{rel} includes missing {inc}"


def test_stamp_from_seconds_splits_exactly():
    t = types.stamp_from_seconds(1_700_000_000.25)
    assert (t.sec, t.nanosec) == (1_700_000_000, 250_000_000)
    t = types.stamp_from_seconds(5.9999999999)
    assert t.sec in (5, 6) and 0 <= t.nanosec < 1_000_000_000
