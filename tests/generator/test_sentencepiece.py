"""A model whose tokenizer ships only as a sentencepiece model (tokenizer.model, no
tokenizer.json) loads through the generator's own loading path and answers."""

import io
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from generator import GeneratorConfig, build_generator

TEXTS = ["The Zorblat Tower is a radio mast in Vellmora.", "It was completed in 1921.",
         "Answer the question using the passages below.", "When was the tower completed?",
         "The quick brown fox jumps over the lazy dog; Sphinx of black quartz, judge my vow!"]


def tiny_sentencepiece_model() -> bytes:
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS * 30), model_writer=model,
                                   vocab_size=320, model_type="bpe", character_coverage=1.0,
                                   byte_fallback=True,  # as Llama's: "\n" has a piece
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=3, minloglevel=2)
    return model.getvalue()


def test_a_sentencepiece_only_tokenizer_loads_and_answers(tmp_path):
    import sentencepiece as spm

    folder = tmp_path / "spm-lm"
    folder.mkdir()
    raw = tiny_sentencepiece_model()
    (folder / "tokenizer.model").write_bytes(raw)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "add_bos_token": True}))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    LlamaForCausalLM(config).save_pretrained(folder)
    assert not (folder / "tokenizer.json").exists()

    generator = build_generator(GeneratorConfig(model=str(folder), kind="causal-lm",
                                                max_new_tokens=4, local_files_only=True))
    reference = spm.SentencePieceProcessor(model_proto=raw)
    question = "When was the tower completed?"
    assert generator.tokenizer(question, add_special_tokens=False)["input_ids"] == \
        reference.encode(question)
    out = generator.answer(question, None, [{"passage_id": "z", "title": "Zorblat Tower",
                                             "text": TEXTS[0] + " " + TEXTS[1]}])
    assert out.ok and "[1] Zorblat Tower" in out.prompt
