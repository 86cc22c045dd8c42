"""What answered, said truthfully from the models loaded (one note for CLI, JSON and demo)."""

import pytest

from generator import GeneratorConfig
from generator.tiny import TINY_GENERATOR_NAME
from rag_vqa.config import load_config
from rag_vqa.loading import LoadedRetriever
from rag_vqa.notes import TINY_NOTE, generator_display_name, models_note

SAMPLE_NOTE = "ReT trained on the 30-flag sample; SmolLM2-135M (text only); not the released ReT"


def loaded(kind, name="x"):
    return LoadedRetriever(model=None, name=name, is_tiny=kind == "tiny", kind=kind)


def test_the_sample_profile_says_what_answered():
    generator = load_config(None, profile="sample").generator
    assert models_note(loaded("sample"), generator) == SAMPLE_NOTE


def test_tiny_models_are_never_called_trained_and_trained_ones_never_untrained():
    tiny_generator = GeneratorConfig(model=TINY_GENERATOR_NAME)
    smol = load_config(None, profile="sample").generator
    assert models_note(loaded("tiny"), tiny_generator) == TINY_NOTE
    mixed = models_note(loaded("sample"), tiny_generator)
    assert "UNTRAINED tiny generator" in mixed and "ReT trained on the 30-flag sample" in mixed
    other = models_note(loaded("tiny"), smol)
    assert "UNTRAINED tiny retriever" in other and "trained on" not in other
    assert "UNTRAINED" not in models_note(loaded("sample"), smol)


def test_released_models_answer_without_a_caveat():
    llava = GeneratorConfig(model="llava-hf/llava-1.5-7b-hf")
    released = loaded("released", "aimagelab/ReT-CLIP-ViT-L-14")
    assert models_note(released, llava) == ""
    assert LoadedRetriever(None, "aimagelab/ReT-CLIP-ViT-L-14", False).kind == "released"
    assert LoadedRetriever(None, "/my/finetuned", False).kind == "checkpoint"
    with pytest.raises(ValueError, match="kind"):
        LoadedRetriever(None, "x", False, kind="magic")


@pytest.mark.parametrize("model, gguf, shown", [
    ("folder", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M"),
    ("Qwen/Qwen2.5-0.5B-Instruct", None, "Qwen2.5-0.5B"),
    ("some/model-F16", None, "model"),
])
def test_generator_display_names(model, gguf, shown):
    config = GeneratorConfig(model=model, kind="causal-lm", gguf_file=gguf)
    assert generator_display_name(config) == shown
