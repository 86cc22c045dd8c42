"""Shared test fixtures. Nothing here (or anywhere in the tests) may touch the network."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: any accidental hub call fails fast
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_retriever():
    from retriever.tiny import build_tiny_retriever

    return build_tiny_retriever(seed=0)
