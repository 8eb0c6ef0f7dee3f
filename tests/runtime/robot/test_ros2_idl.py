"""The checked-in .idl files and the Python IdlStruct types of the ROS 2 adapter describe the same wire types."""

import re
import typing

import pytest

pytest.importorskip("cyclonedds", reason="the dds extra (cyclonedds) is not installed")

from runtime.robot import ros2_types as T  # noqa: E402

IDL_TO_PY = {"int32": "int32", "uint32": "uint32", "double": "float64", "string": "str",
             "sequence<string>": "sequence[str]", "sequence<double>": "sequence[float64]"}


def idl_members(path) -> dict[str, list[tuple[str, str]]]:
    """{qualified struct name: [(type, name)]} for our IDL subset (modules, structs, members)."""
    text = re.sub(r"//[^\n]*", "", path.read_text())
    out, scope, current = {}, [], None
    for m in re.finditer(r"module\s+(\w+)\s*\{|struct\s+(\w+)\s*\{|\}\s*;|([\w:<>]+)\s+(\w+)\s*;", text):
        module, struct, mtype, mname = m.groups()
        if module:
            scope.append(module)
        elif struct:
            current = "::".join([*scope, struct])
            out[current] = []
        elif mtype:
            out[current].append((mtype, mname))
        elif current is not None:
            current = None
        else:
            scope.pop()
    return out


def py_spelling(annotation) -> str:
    if typing.get_origin(annotation) is typing.Annotated:
        meta = annotation.__metadata__[0]
        return meta if isinstance(meta, str) else repr(meta)
    if annotation is str:
        return "str"
    return getattr(annotation, "__idl_typename__", repr(annotation))


def idl_spelling(t: str) -> str:
    seq = re.fullmatch(r"sequence<([\w:]+)>", t)
    if seq and seq.group(1) not in ("string", "double"):
        return f"sequence[{seq.group(1)}]"
    return IDL_TO_PY.get(t, t)


@pytest.mark.parametrize("cls", list(T.IDL_FILES), ids=lambda c: c.__name__)
def test_python_type_matches_checked_in_idl(cls):
    structs = idl_members(T.IDL_DIR / T.IDL_FILES[cls])
    assert cls.__idl_typename__ in structs, f"{cls.__idl_typename__} not in {T.IDL_FILES[cls]}"
    hints = typing.get_type_hints(cls, include_extras=True)
    py = [(py_spelling(hints[n]), n) for n in cls.__dataclass_fields__]
    idl = [(idl_spelling(t), n) for t, n in structs[cls.__idl_typename__]]
    for (it, n), (pt, _) in zip(idl, py, strict=True):
        # nested struct sequences are spelled sequence[<python class repr>] on the Python side
        assert it == pt or (it.startswith("sequence[") and it[9:-1].rsplit("::", 1)[-1] in pt), (n, it, pt)
    assert [n for _, n in idl] == [n for _, n in py]


def test_ros2_wire_names_and_includes_resolve():
    for cls, rel in T.IDL_FILES.items():
        pkg, msg, dds, name = cls.__idl_typename__.split("::")
        assert (msg, dds) == ("msg", "dds_") and name.endswith("_")
        for inc in re.findall(r'#include\s+"([^"]+)"', (T.IDL_DIR / rel).read_text()):
            assert (T.IDL_DIR / inc).is_file(), f"{rel} includes missing {inc}"


def test_durations_split_exactly():
    d = T.duration_from_seconds(2.25)
    assert (d.sec, d.nanosec) == (2, 250_000_000)
    assert T.duration_from_seconds(-1.0) == T.Duration_(0, 0)
