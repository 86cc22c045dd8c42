"""Relevance by a "yes" answer: a language model (text-only, or image-text-to-text with the
question's image) reads one passage and the question, is asked whether the passage answers it,
and the score is the log-odds of its first answer token being "yes" rather than "no":

    score = logsumexp(logits[yes tokens]) - logsumexp(logits[no tokens])
    probability = sigmoid(score) = P(yes) / (P(yes) + P(no))

The yes / no tokens are the first tokens of ``config.yes_words`` / ``no_words``, with and
without a leading space; a token both lists share (a bare space) is dropped. Prompts are
left-padded so that the last position of every row is where the answer starts.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

from retriever.images import load_image

from ..hf_loading import chat_prompt, left_padded, model_device
from .base import ModelReranker, RelevanceScore, RerankerLoadError, passage_text
from .candidates import Reranked
from .configuration_rerank import RerankerConfig
from .loading import load_kwargs, load_reranker_model, truncate_tokens

__all__ = ["CausalLMReranker", "MLLMReranker", "answer_token_ids"]


def answer_token_ids(tokenizer: Any, yes_words: Sequence[str], no_words: Sequence[str]
                     ) -> tuple[list[int], list[int]]:
    """The first-token ids that mean yes and no (see the module docstring)."""
    def first_ids(words: Sequence[str]) -> set[int]:
        out = set()
        for word in words:
            for form in (word, " " + word):
                ids = tokenizer(form, add_special_tokens=False)["input_ids"]
                if ids:
                    out.add(int(ids[0]))
        return out

    yes, no = first_ids(yes_words), first_ids(no_words)
    shared = yes & no
    yes, no = sorted(yes - shared), sorted(no - shared)
    if not yes or not no:
        raise ValueError(f"the tokenizer gives no token that tells {list(yes_words)} from "
                         f"{list(no_words)}; set reranker.yes_words / no_words")
    return yes, no


class _YesNoReranker(ModelReranker):
    def __init__(self, config: RerankerConfig, model: Any, tokenizer: Any,
                 device: torch.device, processor: Any = None) -> None:
        super().__init__(config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.device = model_device(model, device)
        left_padded(tokenizer)
        if processor is not None and hasattr(processor, "tokenizer"):
            processor.tokenizer.padding_side = "left"
        self.yes_ids, self.no_ids = answer_token_ids(tokenizer, config.yes_words,
                                                     config.no_words)

    @classmethod
    def from_components(cls, config: RerankerConfig, model: Any, preprocessor: Any
                        ) -> _YesNoReranker:
        """Wrap a loaded model and its tokenizer (causal-lm) or processor (mllm)."""
        _, device = load_kwargs(config)
        return cls(config, model.to(device), preprocessor, device)

    def body(self, question: str, item: Reranked, template: str | None = None) -> str:
        c = item.candidate
        text = truncate_tokens(self.tokenizer, " ".join((c.text or "").split()),
                               self.config.max_passage_tokens)
        return (template or self.config.prompt).format(
            question=question, passage=passage_text(c.title, text), text=text,
            title=c.title or "")

    @abstractmethod
    def _encode(self, question: str, image: Any, items: Sequence[Reranked]
                ) -> dict[str, torch.Tensor]:
        """Model inputs for one batch (left-padded)."""

    @torch.inference_mode()
    def score(self, question: str, image: Any, items: Sequence[Reranked]
              ) -> list[RelevanceScore]:
        out: list[RelevanceScore] = []
        yes = torch.tensor(self.yes_ids, device=self.device)
        no = torch.tensor(self.no_ids, device=self.device)
        step = self.config.batch_size
        for start in range(0, len(items), step):
            inputs = self._encode(question, image, items[start:start + step])
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            logits = self.model(**inputs).logits[:, -1, :].float()
            margin = torch.logsumexp(logits[:, yes], -1) - torch.logsumexp(logits[:, no], -1)
            out.extend(RelevanceScore(float(m), float(torch.sigmoid(m))) for m in margin.cpu())
        return out


def _with_positions(inputs: Any) -> dict[str, torch.Tensor]:
    """Positions counted from each row's first real token, so that a left-padded row reads
    exactly as it would alone (models with absolute positions included)."""
    out = dict(inputs)
    out["position_ids"] = (out["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return out


class CausalLMReranker(_YesNoReranker):
    """Text only: the passage and the question, through the tokenizer's chat template when it
    has one and ``use_chat_template`` is on (else the plain prompt followed by "Answer:")."""

    kind = "causal-lm"

    @classmethod
    def from_config(cls, config: RerankerConfig) -> CausalLMReranker:
        return cls(*load_reranker_model(config, AutoModelForCausalLM))

    @property
    def templated(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None)) and \
            self.config.use_chat_template

    def render(self, body: str) -> str:
        if not self.templated:
            return body + "\nAnswer:"
        return chat_prompt(self.tokenizer, body, self.config.system)

    def score(self, question: str, image: Any, items: Sequence[Reranked]
              ) -> list[RelevanceScore]:
        if self.config.scoring == "query-likelihood":
            return self._question_likelihood(question, items)
        return super().score(question, image, items)

    @torch.inference_mode()
    def _question_likelihood(self, question: str, items: Sequence[Reranked]
                             ) -> list[RelevanceScore]:
        """Mean log P(question tokens | passage prompt), completion style (no template)."""
        out: list[RelevanceScore] = []
        step = self.config.batch_size
        for start in range(0, len(items), step):
            prefixes = [self.body(question, item, self.config.question_prompt)
                        for item in items[start:start + step]]
            texts = [f"{prefix} {question}" for prefix in prefixes]
            enc = self.tokenizer(texts, padding=True, return_tensors="pt",
                                 return_offsets_mapping=True)
            offsets = enc.pop("offset_mapping")
            inputs = {k: v.to(self.device) for k, v in _with_positions(enc).items()}
            logprobs = torch.log_softmax(self.model(**inputs).logits[:, :-1].float(), -1)
            targets = inputs["input_ids"][:, 1:]
            picked = logprobs.gather(-1, targets[..., None])[..., 0].cpu()
            for row, prefix in enumerate(prefixes):
                # the question's tokens: real (not padding) and starting after the prefix
                real = enc["attention_mask"][row, 1:].bool()
                mask = real & (offsets[row, 1:, 0] >= len(prefix))
                if not mask.any():
                    raise ValueError("the question has no tokens after the passage prompt")
                out.append(RelevanceScore(float(picked[row][mask].mean())))
        return out

    def _encode(self, question: str, image: Any, items: Sequence[Reranked]
                ) -> dict[str, torch.Tensor]:
        texts = [self.render(self.body(question, item)) for item in items]
        return _with_positions(self.tokenizer(texts, padding=True, return_tensors="pt",
                                              add_special_tokens=not self.templated))


class MLLMReranker(_YesNoReranker):
    """The question's image, the passage and the question through the processor's chat
    template; without an image, the same prompt as text only."""

    kind = "mllm"

    def __init__(self, config: RerankerConfig, model: Any, processor: Any,
                 device: torch.device) -> None:
        if not getattr(processor, "chat_template", None):
            raise RerankerLoadError(f"{config.model} has no chat template: it cannot be asked "
                                    "the relevance question")
        super().__init__(config, model, processor.tokenizer, device, processor)

    @classmethod
    def from_config(cls, config: RerankerConfig) -> MLLMReranker:
        return cls(*load_reranker_model(config, AutoModelForImageTextToText, processor=True))

    def render(self, body: str, has_image: bool) -> str:
        return chat_prompt(self.processor, body, self.config.system, image=has_image)

    def _encode(self, question: str, image: Any, items: Sequence[Reranked]
                ) -> dict[str, torch.Tensor]:
        picture = load_image(image) if image is not None else None
        texts = [self.render(self.body(question, item), picture is not None) for item in items]
        inputs = self.processor(text=texts, images=[picture] * len(items) if picture else None,
                                padding=True, return_tensors="pt", add_special_tokens=False)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return dict(inputs)
