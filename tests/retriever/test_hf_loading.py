"""The one Hugging Face loader the generators and rerankers share (retriever.hf_loading)."""

from dataclasses import dataclass

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from retriever.hf_loading import (
    chat_prompt,
    device_and_dtype,
    left_padded,
    load_model,
    truncate_tokens,
)
from retriever.tiny import tiny_causal_lm, tiny_llava, tiny_tokenizer


class LoadError(Exception):
    pass


@dataclass
class Config:
    model: str
    kind: str = "causal-lm"
    revision: str | None = None
    local_files_only: bool = False
    trust_remote_code: bool = False
    gguf_file: str | None = None


def hint(config, exc):
    return f"look at {config.model}"


def test_saved_models_load_with_their_tokenizer_or_processor(tmp_path):
    model, tokenizer = tiny_causal_lm(seed=3)
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    config, loaded, loaded_tokenizer = load_model(
        Config(str(tmp_path / "lm")), AutoModelForCausalLM, role="generator", error=LoadError,
        hint=hint, model_kwargs={"dtype": torch.float32})
    assert config.local_files_only is False  # a folder: nothing asked of the hub
    ids = torch.tensor([[5, 6, 7]])
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert loaded_tokenizer("a b")["input_ids"] == tokenizer("a b")["input_ids"]

    llava, processor = tiny_llava(seed=1)
    llava.save_pretrained(tmp_path / "mm")
    processor.save_pretrained(tmp_path / "mm")
    _, _, loaded_processor = load_model(Config(str(tmp_path / "mm"), "image-text-to-text"),
                                        AutoModelForImageTextToText, role="reranker",
                                        error=LoadError, hint=hint, processor=True)
    assert hasattr(loaded_processor, "image_processor") and loaded_processor.chat_template


def test_failures_name_the_role_the_model_and_the_hint(tmp_path):
    missing = str(tmp_path / "nothing")
    with pytest.raises(LoadError, match=r"cannot load reranker model .*nothing.* \(causal-lm\)"
                                        r": .*Hint: look at .*nothing\."):
        load_model(Config(missing), AutoModelForCausalLM, role="reranker", error=LoadError,
                   hint=hint)
    # a hub id neither cached nor allowed to download fails at once, before from_pretrained
    with pytest.raises(LoadError, match="cannot load generator model 'nobody/none'.*cache"):
        load_model(Config("nobody/none", local_files_only=True), AutoModelForCausalLM,
                   role="generator", error=LoadError, hint=hint)


def test_cuda_defaults_to_bfloat16_and_cpu_to_float32():
    assert device_and_dtype(None, None) == (torch.device("cpu"), torch.float32)
    assert device_and_dtype("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ValueError, match="unknown dtype"):
        device_and_dtype("cpu", "banana")


def test_chat_prompt_puts_the_system_first_and_the_image_before_the_text():
    tokenizer = tiny_tokenizer()
    text = chat_prompt(tokenizer, "the body", system="be brief")
    assert text.index("<|system|>be brief") < text.index("<|user|>the body")
    assert text.endswith("<|assistant|>")
    _, processor = tiny_llava()
    with_image = chat_prompt(processor, "the body", image=True)
    assert with_image.index("<image>") < with_image.index("the body")
    assert "<image>" not in chat_prompt(processor, "the body", image=False)


def test_truncation_cuts_at_a_token_boundary_and_padding_goes_left():
    tokenizer = tiny_tokenizer()
    text = "the weather in the north"
    assert truncate_tokens(tokenizer, text, 1000) == text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for n in (3, 5):
        assert truncate_tokens(tokenizer, text, n) == tokenizer.decode(ids[:n]).rstrip()
    tokenizer.pad_token = None
    assert left_padded(tokenizer).padding_side == "left"
    assert tokenizer.pad_token == tokenizer.eos_token
