"""What one reranking stage is and how it runs: a validated dataclass, loadable from a mapping
(a ``[[reranker.stages]]`` table) and saved as JSON next to whatever uses it.

Kinds (``KINDS``):

- ``mllm``: an image-text-to-text model (``AutoModelForImageTextToText``) reads the question's
  image, the question and one passage and is asked whether the passage helps; the score is the
  log-odds of "yes" against "no" at the first answer token (the critic recipe of ReflectiVA and
  ReAG);
- ``causal-lm``: the same question to a text-only ``AutoModelForCausalLM`` (GGUF files too);
  or, with ``scoring = "query-likelihood"``, the mean log-probability of the question's tokens
  after the passage (UPR, Sachan et al. 2022), which small models do much better;
- ``cross-encoder``: ``AutoModelForSequenceClassification`` over (question, passage), e.g. a BGE
  reranker; one logit is the score, two logits give "relevant" minus "not relevant";
- ``article``: no model: candidates are grouped by article, articles ranked by their best (or
  summed) passage score, and the passages of the best ``articles`` articles kept, article by
  article, best passage first (EchoSight's entity-then-section idea).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..dataconfig import check_keys, from_mapping

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_RELEVANCE_PROMPT",
    "KINDS",
    "MODEL_KINDS",
    "QUERY_LIKELIHOOD_PROMPT",
    "SCORINGS",
    "RerankerConfig",
]

KINDS = {
    "mllm": "image + question + passage -> P(yes) (any image-text-to-text model)",
    "causal-lm": "question + passage -> P(yes) (any causal LM, GGUF included; no image)",
    "cross-encoder": "question + passage -> relevance logit (AutoModelForSequenceClassification)",
    "article": "group by article, keep the best articles' passages (no model)",
}
MODEL_KINDS = ("mllm", "causal-lm", "cross-encoder")
CONFIG_NAME = "reranker_config.json"

DEFAULT_RELEVANCE_PROMPT = (
    "Passage: {passage}\n\n"
    "Question: {question}\n\n"
    "Does the passage contain the answer to the question? Answer yes or no.")
QUERY_LIKELIHOOD_PROMPT = ("Passage: {passage}\n"
                           "Please write a question based on this passage.\nQuestion:")
_PROMPT_FIELDS = {"passage", "question", "title", "text"}
SCORINGS = ("yes-no", "query-likelihood")


def _fields_of(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise ValueError(f"reranker.prompt is not a valid template: {exc}") from exc


@dataclass
class RerankerConfig:
    kind: str
    model: str | None = None            # hub id or folder; none for ``article``
    top: int | None = None              # candidates kept after this stage (None: all)
    batch_size: int = 8                 # (question, passage) pairs per forward pass
    max_passage_tokens: int = 256       # longer passages are cut (model kinds)
    max_length: int = 512               # cross-encoder: question + passage tokens
    prompt: str = DEFAULT_RELEVANCE_PROMPT   # {question} and {passage} ({title}, {text} allowed)
    system: str | None = None           # an optional system message (chat models)
    use_chat_template: bool = True      # False: the plain prompt (completion style)
    # causal-lm: "yes-no" (P(yes) to ``prompt``) or "query-likelihood" (mean log P(question |
    # passage), UPR's recipe: no probability, but small models do it far better)
    scoring: str = "yes-no"
    question_prompt: str = QUERY_LIKELIHOOD_PROMPT
    yes_words: tuple[str, ...] = ("yes", "Yes")
    no_words: tuple[str, ...] = ("no", "No")
    aggregate: str = "max"              # article: "max" or "sum" of passage scores
    articles: int = 3                   # article: how many articles keep their passages
    gguf_file: str | None = None
    revision: str | None = None
    device: str | None = None           # None: CPU; "cuda", "cuda:1", "auto"
    dtype: str | None = None            # None: float32 on CPU, bfloat16 on CUDA
    local_files_only: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reranker.kind must be one of {', '.join(KINDS)}, got "
                             f"{self.kind!r}")
        if self.kind in MODEL_KINDS and not (isinstance(self.model, str) and self.model.strip()):
            raise ValueError(f"a {self.kind} reranker needs reranker.model (a hub id or folder)")
        if self.kind == "article" and self.model:
            raise ValueError("the article reranker uses no model; drop reranker.model")
        for name in ("batch_size", "max_passage_tokens", "max_length", "articles"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"reranker.{name} must be a positive integer, got {value!r}")
        if self.top is not None and (not isinstance(self.top, int) or isinstance(self.top, bool)
                                     or self.top < 1):
            raise ValueError(f"reranker.top must be a positive integer or unset, got "
                             f"{self.top!r}")
        if self.aggregate not in ("max", "sum"):
            raise ValueError(f"reranker.aggregate must be max or sum, got {self.aggregate!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"reranker.scoring must be one of {', '.join(SCORINGS)}, got "
                             f"{self.scoring!r}")
        if self.scoring != "yes-no" and self.kind != "causal-lm":
            raise ValueError("reranker.scoring = query-likelihood is for causal-lm rerankers")
        found = _fields_of(self.question_prompt)
        if not found & {"passage", "text"} or not found <= _PROMPT_FIELDS - {"question"}:
            raise ValueError("reranker.question_prompt must use {passage} (or {text}) and may "
                             "use {title}; the question follows it")
        found = _fields_of(self.prompt)
        if not {"question"} <= found or not found & {"passage", "text"} or \
                not found <= _PROMPT_FIELDS:
            raise ValueError("reranker.prompt must use {question} and {passage} (or {text}) and "
                             f"may use {sorted(_PROMPT_FIELDS)}, got {sorted(found)}")
        self.yes_words, self.no_words = tuple(self.yes_words), tuple(self.no_words)
        if not self.yes_words or not self.no_words or \
                not all(isinstance(w, str) and w.strip() for w in self.yes_words + self.no_words):
            raise ValueError("reranker.yes_words and no_words must be non-empty lists of words")

    @property
    def name(self) -> str:
        """How reports and logs name the stage: ``kind`` or ``kind:model``."""
        return f"{self.kind}:{self.model}" if self.model else self.kind

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RerankerConfig:
        if not isinstance(values, Mapping):
            raise ValueError(f"a reranker stage must be a table of options, got "
                             f"{type(values).__name__}")
        check_keys(values, cls, what="reranker option")
        if "kind" not in values:
            raise ValueError(f"a reranker stage needs kind ({', '.join(KINDS)})")
        return from_mapping(cls, values, what="reranker option")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["yes_words"], out["no_words"] = list(self.yes_words), list(self.no_words)
        return out

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        from retriever.fileio import atomic_write_json

        return atomic_write_json(Path(folder) / CONFIG_NAME, self.to_dict())

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> RerankerConfig:
        path = Path(folder) / CONFIG_NAME
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise ValueError(f"{path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
