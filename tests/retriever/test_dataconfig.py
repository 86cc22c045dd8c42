"""Settings dataclasses built from mappings: unknown keys with a hint, values checked by type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from retriever.dataconfig import check_keys, from_mapping


@dataclass
class Settings:
    batch_size: int = 8
    rate: float = 0.5
    name: str | None = None
    fast: bool = False
    mode: Literal["a", "b"] = "a"
    extra: dict[str, Any] = field(default_factory=dict)
    words: tuple[str, ...] = ()
    internal: int = field(default=0, metadata={"internal": True})


class MyError(ValueError):
    pass


def test_values_build_the_dataclass():
    built = from_mapping(Settings, {"batch_size": 2, "rate": 1, "name": "x", "words": ["w"]})
    assert (built.batch_size, built.rate, built.name, built.words) == (2, 1, "x", ["w"])
    assert from_mapping(Settings, None) == Settings()


@pytest.mark.parametrize("values, message", [
    ({"batch_sise": 2}, r"unknown option 'batch_sise' \(did you mean 'batch_size'\?\)$"),
    ({"zzz": 1}, "unknown option 'zzz'; known: batch_size, rate, name, fast, mode, extra, words$"),
    ({"internal": 1}, "unknown option 'internal'"),
    ({"raet": 1, "fsat": 1}, "unknown options 'raet' .did you mean 'rate'.., 'fsat' .did you"),
])
def test_unknown_keys_are_named_with_the_closest_field(values, message):
    with pytest.raises(MyError, match=message):
        from_mapping(Settings, values, error=MyError)


def test_prefix_and_what_name_the_section():
    with pytest.raises(ValueError, match=r"^unknown training option train\.'rte' \(did you"):
        check_keys({"rte": 1}, Settings, what="training option", prefix="train.")


@pytest.mark.parametrize("values, message", [
    ({"batch_size": "big"}, "s.batch_size must be an integer, got 'big'"),
    ({"batch_size": True}, "s.batch_size must be an integer, got True"),
    ({"batch_size": 2.0}, "s.batch_size must be an integer, got 2.0"),
    ({"rate": "fast"}, "s.rate must be a number, got 'fast'"),
    ({"name": 3}, "s.name must be a string or unset, got 3"),
    ({"fast": 1}, "s.fast must be true or false, got 1"),
    ({"mode": "c"}, "s.mode must be one of 'a', 'b', got 'c'"),
    ({"extra": [1]}, r"s.extra must be a table, got \[1\]"),
])
def test_values_that_do_not_fit_the_annotation_are_refused(values, message):
    with pytest.raises(MyError, match=message):
        from_mapping(Settings, values, prefix="s.", error=MyError)


def test_type_checks_can_be_left_to_the_dataclass():
    assert from_mapping(Settings, {"batch_size": "big"}, types_checked=False).batch_size == "big"
