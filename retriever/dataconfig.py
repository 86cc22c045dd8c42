"""Building a settings dataclass from a mapping (a TOML table, a JSON object, CLI overrides), in
one place: unknown keys are refused with a "did you mean" hint (a misspelled option must never be
ignored silently) and values are checked against the field's annotation, resolved with
:func:`typing.get_type_hints` rather than read from the annotation's text.

The lowest layer of the project's configuration: ``retriever``, ``generator``, ``rag_vqa`` and
``eval`` build their settings with it.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, MutableMapping
from dataclasses import fields, is_dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

__all__ = ["known_fields", "check_keys", "check_types", "from_mapping"]

T = TypeVar("T")

_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
          type(None): "unset"}


def known_fields(cls: type) -> list[str]:
    """The settable fields of a dataclass, in order (those marked ``internal`` are not)."""
    return [f.name for f in fields(cls) if not f.metadata.get("internal")]


def check_keys(values: Mapping[str, Any], cls: type, *, what: str = "option", prefix: str = "",
               error: type[Exception] = ValueError) -> None:
    """Refuse keys of ``values`` that are not fields of ``cls``, naming each with its closest
    field (``unknown option retriever.'modle' (did you mean 'model'?)``)."""
    known = known_fields(cls)
    unknown = [key for key in values if key not in known]
    if not unknown:
        return
    parts, unmatched = [], False
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=1)
        parts.append(f"{prefix}{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        unmatched = unmatched or not close
    plural = "s" if len(unknown) > 1 else ""
    known_list = f"; known: {', '.join(known)}" if unmatched else ""
    raise error(f"unknown {what}{plural} {', '.join(parts)}{known_list}")


def _describe(hint: Any) -> str:
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in get_args(hint))
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(hint))
    if hint in _WORDS:
        return _WORDS[hint]
    if hint in (dict, Mapping, MutableMapping) or get_origin(hint) in (dict, Mapping,
                                                                      MutableMapping):
        return "a table"
    return getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; a hint this check does not describe (a class, a list of
    something) is accepted: the dataclass's own ``__post_init__`` validates those."""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (dict, Mapping, MutableMapping) or origin in (dict, Mapping, MutableMapping):
        return isinstance(value, Mapping)
    return True


def check_types(obj: Any, *, prefix: str = "", error: type[Exception] = ValueError) -> None:
    """Refuse a field of the dataclass instance ``obj`` whose value does not fit its annotation
    (``retriever.batch_size must be an integer, got 'big'``); ``True`` is not an integer here."""
    try:
        hints = typing.get_type_hints(type(obj))
    except (NameError, TypeError):  # an annotation naming what this module cannot import
        hints = {}
    for f in fields(obj):
        hint = hints.get(f.name)
        value = getattr(obj, f.name)
        if hint is not None and not _matches(value, hint):
            raise error(f"{prefix}{f.name} must be {_describe(hint)}, got {value!r}")


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, *, what: str = "option",
                 prefix: str = "", error: type[Exception] = ValueError,
                 types_checked: bool = True) -> T:
    """``cls(**values)`` after :func:`check_keys`, then :func:`check_types` on the result (so a
    value a ``__post_init__`` converted is checked in its final form)."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    values = dict(values or {})
    check_keys(values, cls, what=what, prefix=prefix, error=error)
    obj = cls(**values)
    if types_checked:
        check_types(obj, prefix=prefix, error=error)
    return obj
