"""Fixtures of the evaluation tests: a tiny pipeline over the bundled sample, built once."""

import pytest

from rag_vqa.quickstart import sample_pipeline


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def pipe(cache):
    return sample_pipeline("tiny", cache, k=4, generator={"max_new_tokens": 6})
