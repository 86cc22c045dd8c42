"""Tiny, randomly initialised models built from configs, for tests, benchmarks and offline smoke
runs: ReT retrievers, and the language models (a LLaVA with a Llama text side and a CLIP vision
side, a Llama causal LM) that the tiny generators and rerankers wrap. Their outputs carry no
meaning: anything made with them must say so.

The ReT tokenizer is a real CLIP BPE tokenizer (byte-level alphabet, a handful of merges), so the
whole text path (lower-casing, BOS/EOS, padding, truncation at 77) is the production one; the
language models share a real byte-level BPE tokenizer with a chat template. They live here, not
in ``generator``, because the rerankers (``retriever.rerank``) use them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTokenizer,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .configuration_ret import ReTConfig, ReTRetrieverConfig
from .modeling_retriever import ReTRetriever
from .processing_ret import ReTProcessor

__all__ = ["TINY_NAME", "byte_alphabet", "tiny_clip_tokenizer", "tiny_image_processor",
           "tiny_retriever_config", "build_tiny_retriever", "clip_b_sized_retriever_config",
           "seeded", "CHAT_TEMPLATE", "IMAGE_TOKEN", "TINY_LLAVA_NAME", "TINY_LLAMA_NAME",
           "tiny_tokenizer", "tiny_llava", "tiny_causal_lm"]

T = TypeVar("T")

TINY_NAME = "rag-vqa/tiny-random-ret"
TINY_LLAVA_NAME = "rag-vqa/tiny-random-llava"     # the tiny generator's and mllm reranker's
TINY_LLAMA_NAME = "rag-vqa/tiny-random-llama"     # the tiny causal-lm reranker's
_MERGES = ["t h", "th e</w>", "i n", "a n", "an d</w>", "o n</w>", "e r</w>", "i s</w>", "o f</w>"]


def byte_alphabet() -> list[str]:
    """The printable stand-ins GPT-2/CLIP byte-level BPE use for the 256 byte values (index =
    byte)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = {}, 0
    for b in range(256):
        if b in keep:
            codes[b] = b
        else:
            codes[b] = 256 + extra
            extra += 1
    return [chr(codes[b]) for b in range(256)]


def tiny_clip_tokenizer() -> CLIPTokenizer:
    alphabet = sorted(byte_alphabet(), key=ord)  # vocabulary order: by stand-in code point
    tokens = alphabet + [c + "</w>" for c in alphabet] + [m.replace(" ", "") for m in _MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)},
                              merges=[tuple(m.split(" ")) for m in _MERGES])
    tokenizer.model_max_length = 77
    return tokenizer


def tiny_image_processor(size: int = 32):
    from transformers import AutoImageProcessor  # noqa: F401  (resolves the PIL backend class)
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor as Processor
    return Processor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _backbones(vocab_size: int, text_hidden: int, text_layers: int, vision_hidden: int,
               vision_layers: int, image_size: int, patch_size: int, name: str
               ) -> tuple[CLIPTextConfig, CLIPVisionConfig]:
    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=text_hidden,
                          intermediate_size=2 * text_hidden, num_hidden_layers=text_layers,
                          num_attention_heads=max(1, text_hidden // 16),
                          max_position_embeddings=77, bos_token_id=vocab_size - 2,
                          eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
                          projection_dim=text_hidden)
    vision = CLIPVisionConfig(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                              num_hidden_layers=vision_layers,
                              num_attention_heads=max(1, vision_hidden // 16),
                              image_size=image_size, patch_size=patch_size,
                              projection_dim=vision_hidden)
    text._name_or_path = vision._name_or_path = name
    return text, vision


def tiny_retriever_config(*, hidden_size: int = 64, num_queries: int = 32, output_dim: int = 128,
                          text_layers: int = 4, vision_layers: int = 4,
                          layer_strategy: str | dict[str, Sequence[int]] | None = None,
                          text_hidden: int = 32, vision_hidden: int = 48, image_size: int = 32,
                          patch_size: int = 8, use_tanh: bool = False,
                          use_pooler_features: bool = False, share_text_models: bool = True,
                          share_vision_models: bool = True,
                          share_query_passage_models: bool = False,
                          input_gate_bias_prior: float = 0.0,
                          forget_gate_bias_prior: float = 0.0) -> ReTRetrieverConfig:
    """A retriever config with tiny CLIP backbones; by default one step per backbone layer."""
    vocab = len(tiny_clip_tokenizer())
    text, vision = _backbones(vocab, text_hidden, text_layers, vision_hidden, vision_layers,
                              image_size, patch_size, TINY_NAME)
    if layer_strategy is None:
        steps = min(text_layers, vision_layers)
        layer_strategy = {"text": list(range(text_layers - steps, text_layers)),
                          "vision": list(range(vision_layers - steps, vision_layers))}

    def tower() -> ReTConfig:
        return ReTConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                         layer_strategy=layer_strategy, hidden_size=hidden_size,
                         num_queries=num_queries, late_proj_output_size=output_dim,
                         use_tanh=use_tanh, use_pooler_features=use_pooler_features,
                         input_gate_bias_prior=input_gate_bias_prior,
                         forget_gate_bias_prior=forget_gate_bias_prior)

    return ReTRetrieverConfig(query_config=tower(), passage_config=tower(),
                              share_text_models=share_text_models,
                              share_vision_models=share_vision_models,
                              share_query_passage_models=share_query_passage_models,
                              name_or_path=TINY_NAME)


def clip_b_sized_retriever_config() -> ReTRetrieverConfig:
    """d=1024 cells on randomly initialised CLIP ViT-B/16-sized towers (for benchmarks)."""
    text, vision = _backbones(len(tiny_clip_tokenizer()), 512, 12, 768, 12, 224, 16, TINY_NAME)
    text.intermediate_size, vision.intermediate_size = 2048, 3072
    text.num_attention_heads, vision.num_attention_heads = 8, 12

    def tower() -> ReTConfig:
        return ReTConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                         layer_strategy="clip_vit_b", hidden_size=1024)

    return ReTRetrieverConfig(query_config=tower(), passage_config=tower(), name_or_path=TINY_NAME)


def build_tiny_retriever(seed: int = 0, config: ReTRetrieverConfig | None = None,
                         **config_kwargs) -> ReTRetriever:
    """A seeded, randomly initialised retriever with its processor, in eval mode on CPU."""
    config = config or tiny_retriever_config(**config_kwargs)
    image_size = config.query_config.vision_config.image_size
    processor = ReTProcessor(tiny_clip_tokenizer(), tiny_image_processor(image_size))
    return seeded(seed, lambda: ReTRetriever(config, processor=processor)).eval()


def seeded(seed: int, build: Callable[[], T]) -> T:
    """``build()`` under ``torch.manual_seed(seed)``, the caller's random state left as it was
    (so building a tiny model never changes what a test draws next)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


# -- tiny language models (the tiny generators and rerankers) -----------------------------------

IMAGE_TOKEN = "<image>"
SPECIALS = ["<s>", "</s>", "<pad>", IMAGE_TOKEN, "<|user|>", "<|assistant|>", "<|system|>"]
_LM_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n"), ("o", "n"),
              ("e", "r")]

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
    tokens = SPECIALS + alphabet + ["".join(m) for m in _LM_MERGES]
    vocab = {t: i for i, t in enumerate(tokens)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=list(_LM_MERGES)))
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


def tiny_llava(seed: int = 0, max_positions: int = 512
               ) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    tokenizer = tiny_tokenizer()
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8)
    config = LlavaConfig(vision_config=vision,
                         text_config=_llama_config(len(tokenizer), max_positions),
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_select_strategy="default", vision_feature_layer=-2,
                         projector_hidden_act="gelu")
    model = seeded(seed, lambda: LlavaForConditionalGeneration(config)).eval()
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
    model = seeded(seed, lambda: LlamaForCausalLM(config)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.suppress_tokens = _unprintable_ids(tokenizer)
    return model, tokenizer
