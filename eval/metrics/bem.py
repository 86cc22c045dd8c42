"""BEM answer equivalence (Bulian et al., 2022), the fallback of the official E-VQA score, run
through a PyTorch port of the TF-Hub model. Inputs follow the official TF code: BERT uncased
wordpieces laid out as [CLS] candidate [SEP] reference [SEP] question [SEP] with segment ids
0 / 1 / 2, zero-padded to 512; an answer counts as equivalent when softmax(logits)[1] >= 0.5.

Nothing is loaded at import time: the tokenizer and model are loaded on first use."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEFAULT_BEM_MODEL", "MAX_LENGTH", "BEMLoadError", "BEMScorer"]

logger = logging.getLogger(__name__)

DEFAULT_BEM_MODEL = "kortukov/answer-equivalence-bem"
MAX_LENGTH = 512
THRESHOLD = 0.5


class BEMLoadError(ValueError):
    """The BEM model or tokenizer cannot be loaded (bad id or path, offline without a cached
    copy, or a model that does not have BEM's shape)."""


class BEMScorer:
    """Scores (question, reference, candidate) triples with a BEM classifier.

    ``model`` is a hub id or a local folder holding a BERT sequence classifier (2 labels,
    3 token types) and its uncased WordPiece tokenizer. ``pad_to_max_length`` keeps the official
    fixed 512-token layout; turning it off pads each batch to its longest item instead (faster,
    same answers up to float rounding)."""

    def __init__(self, model: str = DEFAULT_BEM_MODEL, device: str | None = None,
                 batch_size: int = 32, pad_to_max_length: bool = True,
                 local_files_only: bool = False) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_id = str(model)
        self.device_name = device
        self.batch_size = batch_size
        self.pad_to_max_length = pad_to_max_length
        self.local_files_only = local_files_only
        self._tokenizer: Any = None
        self._model: Any = None
        self._device: Any = None

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from retriever.hub import HubUnavailableError, hub_access
        from retriever.runtime import resolve_device

        device = resolve_device(self.device_name)
        try:
            local = hub_access(self.model_id, "BEM model", local_files_only=self.local_files_only)
        except HubUnavailableError as exc:
            raise BEMLoadError(f"cannot load the BEM model: {exc} (or score without BEM: "
                               "--no-bem)") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_id, local_files_only=local)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_id, local_files_only=local)
        except Exception as exc:  # noqa: BLE001 - hub, file and format errors all end here
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BEMLoadError(
                f"cannot load the BEM model {self.model_id!r}: {reason}. Hint: give a hub id or "
                f"a local folder with a BERT sequence classifier and its tokenizer; offline, it "
                f"must already be in the Hugging Face cache (or run without BEM: --no-bem)"
            ) from exc
        config = model.config
        if getattr(config, "num_labels", 2) != 2:
            raise BEMLoadError(f"{self.model_id!r} has {config.num_labels} labels; BEM has 2")
        if getattr(config, "type_vocab_size", 3) < 3:
            raise BEMLoadError(f"{self.model_id!r} has {config.type_vocab_size} token types; "
                               "BEM needs 3 (candidate, reference, question)")
        if getattr(tokenizer, "do_lower_case", True) is False:
            logger.warning("the BEM tokenizer of %s is cased; the official BEM input is "
                           "lowercased", self.model_id)
        self._tokenizer, self._model, self._device = tokenizer, model.to(device).eval(), device
        logger.info("loaded BEM model %s on %s", self.model_id, device)

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        self._load()
        return self._model

    # ------------------------------------------------------------------ encoding
    def _pieces(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _layout(self, question: str, reference: str, candidate: str
                ) -> tuple[list[int], list[int]]:
        """Token ids and segment ids without padding; over-long inputs lose tokens from the end
        of their longest part (the official code would fail on them)."""
        tok = self.tokenizer
        parts = [self._pieces(candidate), self._pieces(reference), self._pieces(question)]
        budget = MAX_LENGTH - 4  # [CLS] + three [SEP]
        total = sum(len(p) for p in parts)
        if total > budget:
            logger.warning("BEM input of %d tokens truncated to %d (question %r)", total + 4,
                           MAX_LENGTH, question[:60])
            lengths = [len(p) for p in parts]
            while sum(lengths) > budget:  # shorten the longest part, down to the next longest
                longest = max(range(3), key=lambda i: lengths[i])
                runner_up = sorted(lengths)[-2]
                lengths[longest] -= max(1, min(sum(lengths) - budget,
                                               lengths[longest] - runner_up))
            parts = [p[:n] for p, n in zip(parts, lengths)]
        ids = [tok.cls_token_id] + parts[0] + [tok.sep_token_id]
        segments = [0] * len(ids)
        for segment, part in ((1, parts[1]), (2, parts[2])):
            ids += part + [tok.sep_token_id]
            segments += [segment] * (len(part) + 1)
        return ids, segments

    def encode_batch(self, examples: Sequence[tuple[str, str, str]]) -> dict[str, torch.Tensor]:
        """Model inputs for (question, reference, candidate) triples: input_ids, token_type_ids
        and attention_mask, zero-padded to 512 (or to the batch's longest item)."""
        import torch

        layouts = [self._layout(q, r, c) for q, r, c in examples]
        width = MAX_LENGTH if self.pad_to_max_length else max(len(i) for i, _ in layouts)
        input_ids = torch.zeros((len(layouts), width), dtype=torch.long)
        token_types = torch.zeros_like(input_ids)
        attention = torch.zeros_like(input_ids)
        for row, (ids, segments) in enumerate(layouts):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            token_types[row, :len(ids)] = torch.tensor(segments)
            attention[row, :len(ids)] = 1
        return {"input_ids": input_ids, "token_type_ids": token_types,
                "attention_mask": attention}

    def encode(self, question: str, reference: str, candidate: str) -> dict[str, torch.Tensor]:
        """The official layout for one example (tensors of shape [1, 512])."""
        return self.encode_batch([(question, reference, candidate)])

    # ------------------------------------------------------------------ scoring
    def probabilities(self, examples: Sequence[tuple[str, str, str]]) -> list[float]:
        """softmax(logits)[1] for each (question, reference, candidate), in batches."""
        import torch

        out: list[float] = []
        model = self.model
        for start in range(0, len(examples), self.batch_size):
            batch = self.encode_batch(examples[start:start + self.batch_size])
            with torch.inference_mode():
                logits = model(**{k: v.to(self._device) for k, v in batch.items()}).logits
            out.extend(torch.softmax(logits.float(), dim=-1)[:, 1].tolist())
        return out

    def probability(self, question: str, reference: str, candidate: str) -> float:
        return self.probabilities([(question, reference, candidate)])[0]

    def equivalent(self, question: str, reference: str, candidate: str) -> bool:
        return self.probability(question, reference, candidate) >= THRESHOLD

    def equivalent_batch(self, examples: Sequence[tuple[str, str, str]]) -> list[bool]:
        return [p >= THRESHOLD for p in self.probabilities(examples)]
