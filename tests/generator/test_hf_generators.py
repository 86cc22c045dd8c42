"""Tiny LLaVA (Llama text side, CLIP vision side) and tiny causal LM, built from configs."""

import pytest
import torch
from PIL import Image

from generator import GeneratorConfig, GeneratorLoadError, QAItem, build_generator
from generator.tiny import IMAGE_TOKEN, build_tiny_generator, tiny_llava
from tests.helpers import random_image

PASSAGES = [
    {"passage_id": "eiffel", "title": "Eiffel Tower",
     "text": "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in "
             "1889 as the entrance arch of the World's Fair."},
    {"passage_id": "louvre", "title": "Louvre", "text": "The Louvre is the world's most visited "
                                                        "art museum, in Paris."},
    {"passage_id": "bigben", "title": "Big Ben", "text": "Big Ben is the nickname of the Great "
                                                         "Bell of the clock at Westminster."},
]


@pytest.fixture(scope="module")
def llava():
    return build_tiny_generator("image-text-to-text", seed=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def text_lm():
    return build_tiny_generator("causal-lm", seed=0, max_new_tokens=12)


def test_prompt_holds_passages_in_rank_order_and_the_question(llava):
    out = llava.answer("When was this tower completed?", random_image(0), PASSAGES)
    prompt = out.prompt
    assert prompt.index("[1] Eiffel Tower") < prompt.index("[2] Louvre") < prompt.index("[3] Big")
    assert "Question: When was this tower completed?" in prompt
    assert prompt.count(IMAGE_TOKEN) == 1 and prompt.endswith("<|assistant|>")
    assert out.passage_ids == ["eiffel", "louvre", "bigben"] and out.ok
    assert out.raw and out.generated_tokens <= 12


def test_image_placeholder_expands_to_the_vision_tokens(llava):
    image = random_image(1)
    prompt = llava.build_prompt("q?", PASSAGES[:1], has_image=True).text
    inputs = llava.processor(text=[prompt], images=[image], add_special_tokens=False,
                             return_tensors="pt")
    image_id = llava.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    patches = (32 // 8) ** 2  # CLIP 32 px / patch 8, CLS dropped by the "default" strategy
    assert int((inputs["input_ids"] == image_id).sum()) == patches
    assert llava.image_tokens(image) == patches - 1
    # the model checks that image tokens and image features match in number
    with torch.no_grad():
        logits = llava.model(**inputs).logits
    assert logits.shape[1] == inputs["input_ids"].shape[1]
    inputs["input_ids"][0, inputs["input_ids"][0] == image_id] = llava.tokenizer.pad_token_id
    with pytest.raises(ValueError):
        llava.model(**inputs)


def test_budget_truncates_passages_to_fit_the_context():
    small = build_tiny_generator("image-text-to-text", seed=0, max_positions=400,
                                 max_new_tokens=8)
    long_passages = [{"title": f"T{i}", "text": "word " * 120, "passage_id": str(i)}
                     for i in range(4)]
    out = small.answer("What is this?", random_image(2), long_passages)
    assert out.ok and out.prompt_tokens <= 400 - 8
    assert out.passage_ids[0] == "0" and out.dropped_passages >= 1
    inputs = small.processor(text=[out.prompt], images=[random_image(2)],
                             add_special_tokens=False, return_tensors="pt")
    assert inputs["input_ids"].shape[1] == out.prompt_tokens
    assert "Question: What is this?" in out.prompt


@pytest.mark.parametrize("kind", ["image-text-to-text", "causal-lm"])
def test_batched_equals_one_by_one(kind, llava, text_lm):
    gen = llava if kind == "image-text-to-text" else text_lm
    items = [QAItem("When was it completed?", random_image(3), PASSAGES),
             QAItem("Who?", random_image(4), PASSAGES[:1]),
             QAItem("A much longer question about the building in this picture, please?",
                    random_image(5), PASSAGES[1:]),
             QAItem("No image here?", None, PASSAGES[:2])]
    batched = gen.answer_batch(items, batch_size=4)
    single = [gen.answer(i.question, i.image, i.passages) for i in items]
    assert [a.raw for a in batched] == [a.raw for a in single]
    assert [a.prompt for a in batched] == [a.prompt for a in single]
    assert all(a.ok for a in batched)


@pytest.mark.parametrize("kind", ["image-text-to-text", "causal-lm"])
def test_streaming_text_equals_non_streaming(kind, llava, text_lm):
    gen = llava if kind == "image-text-to-text" else text_lm
    image = random_image(6)
    full = gen.answer("When?", image, PASSAGES)
    stream = gen.stream("When?", image, PASSAGES)
    pieces = list(stream)
    assert "".join(pieces) == full.raw == stream.result.raw
    assert stream.result.answer == full.answer and stream.result.prompt == full.prompt


def test_text_only_model_never_sees_the_image(text_lm):
    out = text_lm.answer("When was it completed?", random_image(7), PASSAGES)
    assert IMAGE_TOKEN not in out.prompt and "[1] Eiffel Tower" in out.prompt
    assert out.prompt.startswith("<s><|user|>Answer the question using the passages below")


def test_no_retrieval_mode_keeps_only_image_and_question():
    gen = build_tiny_generator("image-text-to-text", use_passages=False, max_new_tokens=4)
    out = gen.answer("What is this?", random_image(8), PASSAGES)
    assert "Passages:" not in out.prompt and out.passage_ids == []
    assert IMAGE_TOKEN in out.prompt


def test_a_failing_item_is_marked_and_the_batch_goes_on(llava, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    items = [QAItem("Fine?", random_image(9), PASSAGES), QAItem("Broken?", broken, PASSAGES),
             QAItem("", random_image(10), PASSAGES),
             QAItem("word " * 600, random_image(11), PASSAGES),
             QAItem("Also fine?", random_image(12), PASSAGES[:1])]
    out = llava.answer_batch(items, batch_size=5)
    assert [a.ok for a in out] == [True, False, False, False, True]
    assert "broken.jpg" in out[1].error
    assert "question is empty" in out[2].error
    assert "instruction and question need" in out[3].error
    assert out[0].raw == llava.answer("Fine?", random_image(9), PASSAGES).raw


def test_unloadable_models_fail_with_a_clear_message(tmp_path):
    with pytest.raises(GeneratorLoadError, match="cannot load generator model"):
        build_generator({"model": str(tmp_path / "nothing"), "kind": "causal-lm",
                         "local_files_only": True})
    with pytest.raises(GeneratorLoadError, match="cannot load generator model"):
        build_generator({"model": "nobody/no-such-llava", "local_files_only": True})
    with pytest.raises(ValueError, match="generator.kind"):
        GeneratorConfig(model="x", kind="seq2seq")
    with pytest.raises(ValueError, match="unknown generator option"):
        GeneratorConfig.from_dict({"model": "x", "max_tokens": 3})


def test_saved_tiny_models_load_through_the_registry(tmp_path):
    model, processor = tiny_llava(0)
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    gen = build_generator({"model": str(tmp_path / "llava"), "local_files_only": True,
                           "max_new_tokens": 5})
    reference = build_tiny_generator("image-text-to-text", seed=0, max_new_tokens=5)
    image = Image.new("RGB", (20, 30), "blue")
    assert gen.answer("What?", image, PASSAGES).raw == reference.answer("What?", image,
                                                                         PASSAGES).raw


def test_an_input_the_processor_rejects_fails_alone(llava):
    from generator.hf_base import PreparedItem

    good = llava._prepare(QAItem("Fine?", random_image(13), PASSAGES))
    bad = PreparedItem(good.prompt, image="not an image")
    results = llava._run_isolated([good, bad, good])
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].raw == results[2].raw == llava.answer("Fine?", random_image(13),
                                                            PASSAGES).raw


def test_quantisation_without_bitsandbytes_says_how_to_get_it():
    pytest.importorskip("transformers")
    try:
        import bitsandbytes  # noqa: F401
        pytest.skip("bitsandbytes is installed")
    except ImportError:
        pass
    with pytest.raises(GeneratorLoadError, match="bitsandbytes"):
        build_generator({"model": "x", "quantization": "4bit"})


def test_completion_style_prompts_skip_the_chat_template_and_end_at_the_answer():
    """prompt.use_chat_template = false: plain text ending where the answer starts (small
    models copy worked examples in this form better than in chat turns)."""
    plain = build_tiny_generator("causal-lm", seed=0, max_new_tokens=4,
                                 prompt={"use_chat_template": False, "max_passages": 1})
    stream = plain.stream("When was it completed?", None, PASSAGES)
    assert stream.passage_ids == ["eiffel"]  # known before the first token
    for _ in stream:
        pass
    prompt = stream.result.prompt
    assert prompt.endswith("Short answer:") and "<|user|>" not in prompt
    assert "[2]" not in prompt and stream.result.passage_ids == ["eiffel"]
