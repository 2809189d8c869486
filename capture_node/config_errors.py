r"""msgspec's validation errors in node.toml's words: `camera[1].fps: must be between 0 (the
source's rate) and 1000, got -1.0`, not `Expected \`float\` >= 0.0 - at \`$.camera[1].fps\``. The
words come from the schema (capture_node/schema.py): each field's type, bounds and Meta.extra."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from enum import Enum
from typing import Any

import msgspec

from framebus.capture_node.schema import CameraConfig, NodeConfig, NodeSettings
from framebus.common.fields import shown

_TABLES = {"node": NodeSettings, "camera": CameraConfig}  # the TOML name of each table's schema
_HINTS = {"cameras": "cameras are [[camera]] tables"}  # unknown fields people do write


_ERROR = re.compile(r"(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_QUOTED = re.compile(r"`([^`]*)`")


def explain(message: str, data: Any) -> str:
    """msgspec's ValidationError in our words: the field as written in node.toml
    (`camera[1].fps`), and the problem with the value given and what is allowed."""
    m = _ERROR.fullmatch(message)
    problem, path = (m["problem"], m["path"] or "") if m else (message, "")
    steps: list[str | int] = [name if name else int(index) for name, index in _STEP.findall(path)]
    quoted = _QUOTED.findall(problem)
    if problem.startswith(("Object contains unknown field", "Object missing required field")):
        steps.append(quoted[0])
    place = _place(steps)
    value = _value_at(data, steps)
    owner, name = _owner(steps)
    annotation, meta = _annotation(owner, name)
    if problem.startswith("Object contains unknown field"):
        if owner is NodeConfig:
            return f"unknown table {name!r} (expected [node] and [[camera]])"
        known = ", ".join(sorted(f.encode_name for f in msgspec.structs.fields(owner)))
        return f"{place}: unknown field ({_HINTS.get(name, f'known: {known}')})"
    if problem.startswith("Object missing required field"):
        return f"{place}: required field is missing"
    if problem.startswith("Expected `object`"):
        return f"{place}: must be a table"
    if problem.startswith("Expected `array`"):
        if name == "camera" and owner is NodeConfig:
            return f"{place}: must be an array of tables ([[camera]])"
        return f"{place}: must be a list of strings, got {shown(value)}"
    if problem.startswith("Invalid enum value"):
        return f"{place}: must be one of {', '.join(_choices(annotation))}, got {shown(value)}"
    if problem.startswith("Number out of range"):
        return f"{place}: {shown(value)} is out of range"
    if ", got `" in problem:  # a value of the wrong type
        wanted = quoted[0]
        if isinstance(value, bool):
            return f"{place}: must be {wanted}, got a boolean"
        said = shown(value)  # 'a list' for what has no short form
        return f"{place}: must be {wanted}, got {said if said.startswith('a ') else f'{type(value).__name__} {said}'}"
    if problem.startswith("Expected `str` of length"):
        hint = (meta.extra or {}).get("hint") if meta else None
        return f"{place}: must not be empty ({hint})" if hint else f"{place}: {problem}"
    if problem.startswith("Expected `") and meta is not None:  # a bound
        given = float(value) if annotation is float and isinstance(value, int) else value
        return f"{place}: must be {bounds(meta)}, got {shown(given)}"
    return f"{place}: {problem}" if place else problem


def bounds(meta: msgspec.Meta) -> str:
    """A field's allowed values in words: 'between 0 (the source's rate) and 1000'."""
    extra = meta.extra or {}
    if "range" in extra:
        return str(extra["range"])
    low = f"{_number(meta.ge)} ({extra['zero']})" if "zero" in extra else _number(meta.ge)
    unit = f" {extra['unit']}" if "unit" in extra else ""
    return f"between {low} and {_number(meta.le)}{unit}"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _place(steps: list[str | int]) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _value_at(data: Any, steps: list[str | int]) -> Any:
    for step in steps:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _owner(steps: list[str | int]) -> tuple[Any, str]:
    """The Struct whose field the last step names (NodeConfig for a top-level table), and its name."""
    names = [s for s in steps if isinstance(s, str)]
    if len(names) <= 1:
        return NodeConfig, names[0] if names else ""
    return _TABLES.get(names[0], NodeConfig), names[1]


def _annotation(owner: Any, name: str) -> tuple[Any, msgspec.Meta | None]:
    """A field's type and its Meta (bounds, words for errors and the reference)."""
    hints = typing.get_type_hints(owner, include_extras=True)
    field = next((f.name for f in msgspec.structs.fields(owner) if f.encode_name == name), None)
    hint = hints.get(field or "")
    if hint is not None and typing.get_origin(hint) is typing.Annotated:
        metas = [m for m in hint.__metadata__ if isinstance(m, msgspec.Meta)]
        return hint.__origin__, metas[0] if metas else None
    return hint, None


def _choices(annotation: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    return [str(a) for a in typing.get_args(annotation)]


def schema_fields(table: type[msgspec.Struct]) -> Iterator[tuple[str, Any, Any, msgspec.Meta | None]]:
    """Each field of a table: its name in node.toml, type, default and Meta (for the reference)."""
    for f in msgspec.structs.fields(table):
        annotation, meta = _annotation(table, f.encode_name)
        yield f.encode_name, annotation, f.default, meta


def field_meta(owner: Any, name: str) -> msgspec.Meta | None:
    return _annotation(owner, name)[1]
