"""Tiny, randomly initialised answering models built from configs (a LLaVA with a Llama text side
and a CLIP vision side, and a Llama causal LM), with a real byte-level BPE tokenizer and a chat
template. For tests, benchmarks and offline smoke runs: their answers are meaningless.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig, LlamaConfig, LlamaForCausalLM, LlavaConfig, LlavaForConditionalGeneration,
    LlavaProcessor, PreTrainedTokenizerFast)

from .base import Generator
from .config import GeneratorConfig
from .hf_multimodal import ImageTextToTextGenerator
from .hf_text import CausalLMGenerator

__all__ = ["TINY_GENERATOR_NAME", "CHAT_TEMPLATE", "tiny_tokenizer", "tiny_llava",
           "tiny_causal_lm", "tiny_generator", "build_tiny_generator"]

TINY_GENERATOR_NAME = "rag-vqa/tiny-random-llava"
IMAGE_TOKEN = "<image>"
SPECIALS = ["<s>", "</s>", "<pad>", IMAGE_TOKEN, "<|user|>", "<|assistant|>", "<|system|>"]
_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n"), ("o", "n"), ("e", "r")]

# Messages with string content (text models) or typed parts (multimodal processors).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{% elif m['role'] == 'user' %}<|user|>"
    "{% else %}<|assistant|>{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{% if m['role'] == 'assistant' %}</s>{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE over the 256 byte symbols plus a few merges: encodes any text."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = SPECIALS + alphabet + ["".join(m) for m in _MERGES]
    vocab = {t: i for i, t in enumerate(tokens)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=list(_MERGES)))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>",
                                        additional_special_tokens=SPECIALS[3:])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 512
    return tokenizer


def _unprintable_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Byte tokens that would decode to control characters or partial UTF-8, and the
    special tokens other than end-of-sequence: the tiny models never emit them, so their
    (meaningless) answers at least print cleanly."""
    from retriever.tiny import byte_alphabet

    byte_of = {char: byte for byte, char in enumerate(byte_alphabet())}
    bad = [tokenizer.convert_tokens_to_ids(t) for t in SPECIALS if t != "</s>"]
    for token, token_id in tokenizer.get_vocab().items():
        if len(token) == 1 and token in byte_of:
            byte = byte_of[token]
            if (byte < 32 and byte != 10) or byte >= 127:
                bad.append(token_id)
    return sorted(set(bad))


def _llama_config(vocab: int, max_positions: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=max_positions, bos_token_id=0, eos_token_id=1,
                       pad_token_id=2, tie_word_embeddings=False)


def _seeded(seed: int, build):
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


def tiny_llava(seed: int = 0, max_positions: int = 512
               ) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    from retriever.tiny import tiny_image_processor

    tokenizer = tiny_tokenizer()
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8)
    config = LlavaConfig(vision_config=vision,
                         text_config=_llama_config(len(tokenizer), max_positions),
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_select_strategy="default", vision_feature_layer=-2,
                         projector_hidden_act="gelu")
    model = _seeded(seed, lambda: LlavaForConditionalGeneration(config)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.suppress_tokens = _unprintable_ids(tokenizer)
    processor = LlavaProcessor(image_processor=tiny_image_processor(32), tokenizer=tokenizer,
                               patch_size=8, vision_feature_select_strategy="default",
                               chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN,
                               num_additional_image_tokens=1)
    return model, processor


def tiny_causal_lm(seed: int = 0, max_positions: int = 512
                   ) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = tiny_tokenizer()
    config = _llama_config(len(tokenizer), max_positions)
    model = _seeded(seed, lambda: LlamaForCausalLM(config)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.suppress_tokens = _unprintable_ids(tokenizer)
    return model, tokenizer


def tiny_generator(config: GeneratorConfig, seed: int = 0, max_positions: int = 512
                   ) -> Generator:
    """The tiny random model of ``config.kind``, driven by every other option of ``config``."""
    if config.kind == "causal-lm":
        model, tokenizer = tiny_causal_lm(seed, max_positions)
        return CausalLMGenerator.from_components(config, model, tokenizer)
    model, processor = tiny_llava(seed, max_positions)
    return ImageTextToTextGenerator.from_components(config, model, processor)


def build_tiny_generator(kind: str = "image-text-to-text", seed: int = 0,
                         max_positions: int = 512, **options) -> Generator:
    """A ready Generator over a tiny random model; ``options`` are GeneratorConfig fields."""
    return tiny_generator(GeneratorConfig(model=TINY_GENERATOR_NAME, kind=kind, **options),
                          seed, max_positions)
