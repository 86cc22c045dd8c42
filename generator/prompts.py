"""Prompt building, in one place: an instruction asking for a short answer (with ``cite``, also
for the numbers of the passages it used), optional worked examples (few-shot demonstrations, for
small models that copy a format better than they follow an instruction), the retrieved passages
(title and text, numbered in rank order so answers can cite them) and the question. A passage
whose text already starts with its title (importers prefix "Title - Section: ") is shown with
that title once, never twice.

Budgets are in tokens of the answering model: at most ``max_passages`` passages are given, each is
cut to ``max_passage_tokens``, and
passages are cut or dropped, lowest rank first, until the whole prompt (chat template and image
tokens included) fits the model's context minus the tokens reserved for the answer. The question
, the instruction and the examples are never truncated: if they alone do not fit, the item fails
with
:class:`PromptTooLongError`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from retriever.dataconfig import from_mapping

__all__ = ["PromptConfig", "ContextPassage", "BuiltPrompt", "PromptBuilder", "PromptTooLongError",
           "PromptOps", "as_context_passages"]


class PromptTooLongError(ValueError):
    """The instruction and question alone exceed the model's context."""


def _fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@dataclass
class PromptConfig:
    """Prompt texts and budgets; every field can be overridden from the configuration file."""

    instruction: str = ("Answer the question about the image using the passages below. Reply with "
                        "a short answer (a few words), without explanation.")
    no_context_instruction: str = ("Answer the question about the image. Reply with a short "
                                   "answer (a few words), without explanation.")
    text_only_instruction: str = ("Answer the question using the passages below. Reply with a "
                                  "short answer (a few words), without explanation.")
    context_header: str = "Passages:"
    passage_template: str = "[{rank}] {title}: {text}"
    untitled_passage_template: str = "[{rank}] {text}"
    question_template: str = "Question: {question}\nShort answer:"
    system: str | None = None
    chat_template: str | None = None    # Jinja template for models that ship none
    max_passage_tokens: int = 160
    max_prompt_tokens: int | None = None
    min_passage_tokens: int = 16
    max_passages: int | None = None     # None: as many as fit
    # worked examples shown before the real question, each {"passages": [{"title", "text"}],
    # "question", "answer"}, in the same layout
    examples: list[dict[str, Any]] = field(default_factory=list)
    use_chat_template: bool = True      # False: plain completion text (causal-lm models only)
    # cited answers: with ``cite`` (load_config sets it from [answer] cite) the instruction given
    # with passages ends with ``cite_instruction``; rag_vqa.citations reads the markers back
    cite: bool = False
    cite_instruction: str = ("After the answer, cite the numbers of the passages that support it "
                             "in square brackets, for example: Paris [1].")

    def __post_init__(self) -> None:
        required = {"question_template": {"question"}, "passage_template": {"rank", "text"},
                    "untitled_passage_template": {"rank", "text"}}
        allowed = {"question_template": {"question"},
                   "passage_template": {"rank", "title", "text"},
                   "untitled_passage_template": {"rank", "text"}}
        for name, needs in required.items():
            found = _fields_of(getattr(self, name))
            if not needs <= found or not found <= allowed[name]:
                raise ValueError(f"prompt.{name} must use {sorted(needs)} (and may use "
                                 f"{sorted(allowed[name])}), got {sorted(found)}")
        if self.max_passage_tokens < 1 or self.min_passage_tokens < 1:
            raise ValueError("prompt token budgets must be positive")
        if self.max_passages is not None and self.max_passages < 1:
            raise ValueError("prompt.max_passages must be at least 1 (or unset)")
        for i, example in enumerate(self.examples):
            if not isinstance(example, Mapping) or not isinstance(example.get("question"), str) \
                    or not isinstance(example.get("answer"), str) \
                    or not isinstance(example.get("passages", []), list):
                raise ValueError(f"prompt.examples[{i}] needs a question and an answer (text) "
                                 "and may have passages (a list of {title, text})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> PromptConfig:
        return from_mapping(cls, values, what="prompt option")


@dataclass(frozen=True)
class ContextPassage:
    text: str
    title: str | None = None
    passage_id: str | None = None
    score: float | None = None


def as_context_passages(passages: Sequence[Any]) -> list[ContextPassage]:
    """Accept ContextPassage, KB Passage-like objects, dicts or plain strings."""
    out = []
    for p in passages:
        if isinstance(p, ContextPassage):
            out.append(p)
        elif isinstance(p, str):
            out.append(ContextPassage(p))
        elif isinstance(p, Mapping):
            out.append(ContextPassage(p.get("text") or "", p.get("title"), p.get("passage_id"),
                                      p.get("score")))
        else:
            out.append(ContextPassage(getattr(p, "text", "") or "", getattr(p, "title", None),
                                      getattr(p, "passage_id", None), getattr(p, "score", None)))
    return out


def _starts_with_title(text: str, title: str) -> bool:
    """Whether the text already opens with its title ("Title: ...", "Title - Section: ...")."""
    head, name = " ".join(text.split()).casefold(), " ".join(title.split()).casefold()
    return bool(name) and head.startswith(name) and head[len(name):len(name) + 1] in (":", " ",
                                                                                     "-", "")


class PromptOps(Protocol):
    """What the builder needs from a generator's tokenizer / processor."""

    def count_tokens(self, text: str) -> int: ...

    def truncate_tokens(self, text: str, max_tokens: int) -> str: ...

    def render(self, body: str, has_image: bool) -> str: ...


@dataclass
class BuiltPrompt:
    """The exact text given to the model and what went into it."""

    text: str
    body: str
    num_tokens: int
    passage_ids: list[str | None] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)   # per included passage
    dropped: int = 0                                        # passages that did not fit at all


class PromptBuilder:
    def __init__(self, config: PromptConfig, ops: PromptOps, context_limit: int,
                 reserve_tokens: int, use_passages: bool = True, text_only: bool = False) -> None:
        self.config = config
        self.ops = ops
        self.limit = context_limit - reserve_tokens
        if config.max_prompt_tokens:
            self.limit = min(self.limit, config.max_prompt_tokens)
        self.use_passages = use_passages
        self.text_only = text_only

    def _instruction(self, with_context: bool) -> str:
        if not with_context:
            return self.config.no_context_instruction
        text = self.config.text_only_instruction if self.text_only else self.config.instruction
        return f"{text.rstrip()} {self.config.cite_instruction}" if self.config.cite else text

    def _turn(self, question: str, lines: list[str]) -> list[str]:
        parts = [self.config.context_header + "\n" + "\n".join(lines)] if lines else []
        return parts + [self.config.question_template.format(question=question.strip())]

    def _examples(self, with_context: bool) -> list[str]:
        out = []
        for example in self.config.examples:
            passages = as_context_passages(example.get("passages") or []) if with_context else []
            lines = [self._line(rank, p, " ".join(p.text.split()))
                     for rank, p in enumerate(passages, start=1)]
            turn = self._turn(example["question"], lines)
            turn[-1] = f"{turn[-1]} {example['answer']}"
            out.append("\n\n".join(turn))
        return out

    def _body(self, question: str, lines: list[str]) -> str:
        parts = [self._instruction(bool(lines)), *self._examples(bool(lines))]
        return "\n\n".join(parts + self._turn(question, lines))

    def _line(self, rank: int, passage: ContextPassage, text: str) -> str:
        if passage.title and not _starts_with_title(passage.text, passage.title):
            return self.config.passage_template.format(rank=rank, title=passage.title, text=text)
        return self.config.untitled_passage_template.format(rank=rank, text=text)

    def build(self, question: str, passages: Sequence[ContextPassage], has_image: bool,
              extra_tokens: int = 0) -> BuiltPrompt:
        """``extra_tokens``: what the model adds beyond the rendered text's own tokens (e.g. an
        image placeholder expanding into hundreds of image tokens)."""
        passages = list(passages) if self.use_passages else []
        dropped_by_count = 0
        if self.config.max_passages is not None and len(passages) > self.config.max_passages:
            dropped_by_count = len(passages) - self.config.max_passages
            passages = passages[: self.config.max_passages]

        def length(rendered: str) -> int:
            return self.ops.count_tokens(rendered) + extra_tokens

        base = self.ops.render(self._body(question, []), has_image)
        base_len = length(base)
        if base_len > self.limit:
            raise PromptTooLongError(f"the instruction and question need {base_len} tokens but "
                                     f"the model allows {self.limit} for the prompt")
        budget = self.limit - base_len
        for _ in range(4):  # tokenisation in context can differ slightly: re-measure and shrink
            lines, truncated, ids, dropped = self._fit(passages, budget)
            text = self.ops.render(self._body(question, lines), has_image)
            total = length(text)
            if total <= self.limit:
                return BuiltPrompt(text, self._body(question, lines), total, ids, truncated,
                                   dropped + dropped_by_count)
            budget -= total - self.limit
        return BuiltPrompt(base, self._body(question, []), base_len, [], [],
                           len(passages) + dropped_by_count)

    def _fit(self, passages: list[ContextPassage], budget: int
             ) -> tuple[list[str], list[bool], list[str | None], int]:
        header = self.ops.count_tokens(self.config.context_header) + 2
        remaining = budget - header
        lines, truncated, ids = [], [], []
        for rank, passage in enumerate(passages, start=1):
            text = " ".join(passage.text.split())
            cut = self.ops.truncate_tokens(text, self.config.max_passage_tokens)
            line = self._line(rank, passage, cut)
            cost = self.ops.count_tokens(line) + 1
            if cost > remaining:
                overhead = self.ops.count_tokens(self._line(rank, passage, "")) + 1
                room = remaining - overhead
                if room < self.config.min_passage_tokens:
                    break
                cut = self.ops.truncate_tokens(cut, room)
                line = self._line(rank, passage, cut)
                cost = self.ops.count_tokens(line) + 1
            lines.append(line)
            truncated.append(cut != text)
            ids.append(passage.passage_id)
            remaining -= cost
            if remaining <= 0:
                break
        return lines, truncated, ids, len(passages) - len(lines)
