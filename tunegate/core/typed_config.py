"""Typed configuration from plain YAML data: frozen dataclasses checked field by field.

``build`` walks a dataclass's type hints (nested dataclasses, ``Literal``, unions with
``None``, lists, mappings, numbers, non-empty strings) and collects every problem (unknown
keys, wrong types) with the key that has it, instead of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin


def build(cls: type, raw: Any, prefix: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from a mapping, appending every problem found to `problems`."""
    where = prefix.rstrip(".") or "params.yaml"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping, got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key; known keys are {', '.join(sorted(fields))}")
    kwargs = {}
    for name in fields:
        if name not in raw:
            continue
        hint, value = hints[name], raw[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, f"{prefix}{name}.", problems)
        else:
            ok, converted, expected = coerce(hint, value)
            if ok:
                kwargs[name] = converted
            else:
                problems.append(f"{prefix}{name}: {value!r} is not {expected}")
    return cls(**kwargs)


def coerce(hint: Any, value: Any) -> tuple[bool, Any, str]:
    """Check `value` against a type hint; return (ok, value, description of what is accepted)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return value in args, value, "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        descriptions = []
        for arg in args:
            if arg is type(None):
                if value is None:
                    return True, None, ""
                descriptions.append("null")
                continue
            ok, converted, expected = coerce(arg, value)
            if ok:
                return True, converted, ""
            descriptions.append(expected)
        return False, value, " or ".join(descriptions)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return False, value, f"a mapping of names to {args[1].__name__}"
        items = {k: coerce(args[1], v) for k, v in value.items()}
        if all(ok for ok, _, _ in items.values()):
            return True, {k: v for k, (_, v, _) in items.items()}, ""
        return False, value, f"a mapping of names to {args[1].__name__}"
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value, f"a list of {args[0].__name__}"
        items = [coerce(args[0], v) for v in value]
        if all(ok for ok, _, _ in items):
            return True, tuple(v for _, v, _ in items), ""
        return False, value, f"a list of {args[0].__name__}"
    if hint is bool:
        return isinstance(value, bool), value, "true or false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value), ""
        return False, value, "a number"
    if hint is str:
        return isinstance(value, str) and value != "", value, "a non-empty string"
    return isinstance(value, hint), value, hint.__name__
