"""A text cross-encoder (``AutoModelForSequenceClassification``, e.g. BAAI/bge-reranker-base)
reading the question and the passage together. With one output logit the score is that logit
and the probability its sigmoid; with two, the score is logit[1] - logit[0] ("relevant" minus
"not relevant") and the probability the softmax of label 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from .base import ModelReranker, RelevanceScore, passage_text
from .candidates import Reranked
from .configuration_rerank import RerankerConfig
from .loading import load_kwargs, load_reranker_model, truncate_tokens

__all__ = ["CrossEncoderReranker"]


class CrossEncoderReranker(ModelReranker):
    kind = "cross-encoder"

    def __init__(self, config: RerankerConfig, model: Any, tokenizer: Any,
                 device: torch.device) -> None:
        super().__init__(config)
        labels = int(getattr(model.config, "num_labels", 1))
        if labels not in (1, 2):
            raise ValueError(f"a cross-encoder reranker needs 1 or 2 output labels, "
                             f"{config.model} has {labels}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.labels = labels

    @classmethod
    def from_components(cls, config: RerankerConfig, model: Any, tokenizer: Any
                        ) -> CrossEncoderReranker:
        _, device = load_kwargs(config)
        return cls(config, model.to(device), tokenizer, device)

    @classmethod
    def from_config(cls, config: RerankerConfig) -> CrossEncoderReranker:
        return cls(*load_reranker_model(config, AutoModelForSequenceClassification))

    def _passage(self, item: Reranked) -> str:
        c = item.candidate
        text = truncate_tokens(self.tokenizer, " ".join((c.text or "").split()),
                               self.config.max_passage_tokens)
        return passage_text(c.title, text)

    @torch.inference_mode()
    def score(self, question: str, image: Any, items: Sequence[Reranked]
              ) -> list[RelevanceScore]:
        out: list[RelevanceScore] = []
        step = self.config.batch_size
        for start in range(0, len(items), step):
            batch = items[start:start + step]
            inputs = self.tokenizer([question] * len(batch), [self._passage(i) for i in batch],
                                    padding=True, truncation="only_second",
                                    max_length=self.config.max_length, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            logits = self.model(**inputs).logits.float()
            if self.labels == 1:
                scores = logits[:, 0]
                probs = torch.sigmoid(scores)
            else:
                scores = logits[:, 1] - logits[:, 0]
                probs = torch.softmax(logits, -1)[:, 1]
            out.extend(RelevanceScore(float(s), float(p))
                       for s, p in zip(scores.cpu(), probs.cpu()))
        return out
