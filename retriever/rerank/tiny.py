"""Tiny, randomly initialised rerankers of every model kind, built from configs with a fixed
seed (the tiny LLaVA and Llama of retriever.tiny, and a two-layer BERT cross-encoder over the
same byte-level tokenizer). For tests and benchmarks of the plumbing: their scores are noise."""

from __future__ import annotations

from typing import Any

from ..tiny import TINY_LLAMA_NAME, TINY_LLAVA_NAME
from .base import Reranker
from .configuration_rerank import RerankerConfig

__all__ = ["TINY_RERANKER_NAMES", "build_tiny_reranker", "tiny_cross_encoder"]

TINY_RERANKER_NAMES = {"mllm": TINY_LLAVA_NAME, "causal-lm": TINY_LLAMA_NAME,
                       "cross-encoder": "rag-vqa/tiny-random-bert-cross-encoder"}


def tiny_cross_encoder(seed: int = 0, num_labels: int = 1) -> tuple[Any, Any]:
    """A BertForSequenceClassification and a tokenizer that encodes pairs as
    ``<s> question </s> passage </s>`` with segment ids 0 / 1."""
    from tokenizers import processors
    from transformers import BertConfig, BertForSequenceClassification

    from ..tiny import seeded, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", bos), ("</s>", eos)])
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512,
                        type_vocab_size=2, pad_token_id=tokenizer.pad_token_id,
                        num_labels=num_labels)
    model = seeded(seed, lambda: BertForSequenceClassification(config)).eval()
    return model, tokenizer


def build_tiny_reranker(kind: str, seed: int = 0, **options: Any) -> Reranker:
    """A ready reranker of ``kind`` over a tiny random model; ``options`` are RerankerConfig
    fields (``article`` needs no model and is built as configured)."""
    from ..tiny import tiny_causal_lm, tiny_llava
    from . import build_reranker
    from .modeling_cross_encoder import CrossEncoderReranker
    from .modeling_yesno import CausalLMReranker, MLLMReranker

    if kind == "article":
        return build_reranker(RerankerConfig(kind=kind, **options))
    config = RerankerConfig(kind=kind, model=TINY_RERANKER_NAMES[kind], **options)
    if kind == "mllm":
        return MLLMReranker.from_components(config, *tiny_llava(seed))
    if kind == "causal-lm":
        return CausalLMReranker.from_components(config, *tiny_causal_lm(seed))
    return CrossEncoderReranker.from_components(config, *tiny_cross_encoder(seed))
