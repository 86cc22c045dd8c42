"""Argument types shared by every ``rag-vqa`` command: a bad value stops at parse time with a
message naming the flag and what is allowed (exit code 2), never later as a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["positive_int", "non_negative_int", "non_negative_float", "port", "device", "dtype",
           "DTYPE_CHOICES", "int_range", "add_hub_options"]

DTYPE_CHOICES = ("float32", "bfloat16", "float16", "auto")


def int_range(low: int | None = None, high: int | None = None,
              what: str = "a whole number") -> Callable[[str], int]:
    """An argparse type accepting integers in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = (f"at least {low}" if high is None else f"at most {high}" if low is None
                      else f"between {low} and {high}")
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def non_negative_float(text: str) -> float:
    """A number >= 0 (fractions allowed: ``--gpus-per-worker 0.5`` puts two workers on a GPU)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


positive_int = int_range(1, what="a positive whole number")
non_negative_int = int_range(0, what="a whole number >= 0")
port = int_range(1, 65535, what="a TCP port")


def device(text: str) -> str:
    """cpu, cuda, cuda:N, mps or auto, checked against this machine (CUDA really present)."""
    from retriever.runtime import resolve_device

    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def dtype(text: str) -> str:
    value = text.strip().lower()
    aliases = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16",
               "half": "float16"}
    value = aliases.get(value, value)
    if value not in DTYPE_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; use one of "
                                         f"{', '.join(DTYPE_CHOICES)}")
    return value


def add_hub_options(parser: argparse.ArgumentParser, repo_type: str, push: bool) -> None:
    """The flags every hub push / pull command takes (one wording, one meaning)."""
    if push:
        parser.add_argument("--private", action="store_true",
                            help="create the repository private")
    else:
        parser.add_argument("--revision", default=None, help="branch, tag or commit")
    parser.add_argument("--token", default=None, help="hub token (default: the logged-in one)")
    parser.add_argument("--hub-dir", default=None,
                        help="a local folder standing in for the hub (e.g. a shared drive): the "
                             f"repository is HUB_DIR/{repo_type}s/OWNER/NAME")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
