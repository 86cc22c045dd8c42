"""What every Hugging Face generator shares: prompt budgeting with the model's own tokenizer,
batched greedy (or sampled) generation with LEFT padding and an explicit pad token, stopping at
the first line, streaming, and failure isolation (one bad item never sinks a batch)."""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TextIteratorStreamer

from retriever.hf_loading import device_and_dtype, left_padded, load_model, model_device
from retriever.hf_loading import truncate_tokens as truncate_to_tokens

from .base import AnswerStream, GeneratedAnswer, Generator, GeneratorLoadError, QAItem
from .config import GeneratorConfig
from .postprocess import clean_answer
from .prompts import BuiltPrompt, PromptBuilder, PromptTooLongError, as_context_passages

__all__ = ["HFGenerator", "PreparedItem", "load_hf_model", "model_load_kwargs"]

logger = logging.getLogger(__name__)

ITEM_ERRORS = (PromptTooLongError, ValueError, OSError, TypeError)


@dataclass
class PreparedItem:
    prompt: BuiltPrompt
    image: Any = None                  # a PIL image for multimodal models, else None


def model_load_kwargs(config: GeneratorConfig) -> tuple[dict[str, Any], torch.device]:
    """from_pretrained keyword arguments for dtype, device placement and quantisation."""
    # 4/8-bit weights live on the GPU (bitsandbytes): an unset device means "auto" there
    device, dtype = device_and_dtype(config.device or ("auto" if config.quantization else None),
                                     config.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config.device_map:
        kwargs["device_map"] = config.device_map
    if config.quantization:
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as exc:
            raise GeneratorLoadError("4/8-bit loading needs bitsandbytes: pip install "
                                     "'rag-vqa[quant]'") from exc
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=config.quantization == "4bit", load_in_8bit=config.quantization == "8bit",
            bnb_4bit_compute_dtype=dtype)
        kwargs.setdefault("device_map", "auto")
    return kwargs, device


def _hint(config: GeneratorConfig, exc: Exception) -> str:
    if config.local_files_only or "offline" in str(exc).lower():
        return ("it is not a local folder and is not in the Hugging Face cache; download it once "
                "with network access")
    return ("check the hub id or path, your network, and that the model type is supported by "
            "the installed transformers")


def load_hf_model(config: GeneratorConfig, model_class: Any, processor: bool = False
                  ) -> tuple[GeneratorConfig, Any, Any, torch.device]:
    """The config loaded with, the model (on its device unless accelerate places it), its
    tokenizer (or processor) and the device; GeneratorLoadError naming the model, at once when
    the hub is unreachable and the model not cached (``retriever.hf_loading``)."""
    kwargs, device = model_load_kwargs(config)   # settings first: cheapest, most specific
    config, model, preprocessor = load_model(config, model_class, role="generator",
                                             error=GeneratorLoadError, hint=_hint,
                                             model_kwargs=kwargs, processor=processor)
    if "device_map" not in kwargs:
        model = model.to(device)
    return config, model, preprocessor, device


class HFGenerator(Generator):
    """Shared machinery; subclasses say how prompts are rendered and inputs are made."""

    auto_model: Any = None           # the transformers Auto class that loads this kind
    uses_processor = False           # loaded with its processor (image-text), else its tokenizer

    @classmethod
    def load(cls, config: GeneratorConfig) -> HFGenerator:
        return cls(*load_hf_model(config, cls.auto_model, processor=cls.uses_processor))

    @classmethod
    def from_components(cls, config: GeneratorConfig, model: Any, preprocessor: Any
                        ) -> HFGenerator:
        """Wrap an already loaded model and its processor (image-text models) or tokenizer
        (text models): used by tests and notebooks."""
        kwargs, device = model_load_kwargs(config)
        placed = "device_map" in kwargs or getattr(model, "hf_device_map", None)
        return cls(config, model if placed else model.to(device), preprocessor, device)

    def __init__(self, config: GeneratorConfig, model: Any, tokenizer: Any, device: torch.device,
                 processor: Any = None) -> None:
        super().__init__(config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.device = model_device(model, device)
        self.pad_token_id = left_padded(tokenizer).pad_token_id
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
            else model.config
        limit = getattr(text_config, "max_position_embeddings", None) or 4096
        self.context_limit = int(limit)
        self.builder = PromptBuilder(config.prompt, self, self.context_limit,
                                     reserve_tokens=config.max_new_tokens,
                                     use_passages=config.use_passages,
                                     text_only=self.kind == "causal-lm")

    # -- PromptOps --------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def truncate_tokens(self, text: str, max_tokens: int) -> str:
        return truncate_to_tokens(self.tokenizer, text, max_tokens)

    @abstractmethod
    def render(self, body: str, has_image: bool) -> str:
        """The full prompt text (chat template applied, generation prompt added)."""

    @abstractmethod
    def _prepare(self, item: QAItem) -> PreparedItem:
        """Load the image and build the prompt; raises for an item that cannot be answered."""

    @abstractmethod
    def _encode(self, items: Sequence[PreparedItem]) -> dict[str, torch.Tensor]:
        """Model inputs for a batch (left padded)."""

    # -- generation -------------------------------------------------------------------------------
    def _generation_kwargs(self, max_new_tokens: int | None = None) -> dict[str, Any]:
        c = self.config
        if max_new_tokens is not None and not 1 <= max_new_tokens <= c.max_new_tokens:
            raise ValueError(f"max_new_tokens must be between 1 and the configured "
                             f"{c.max_new_tokens} (prompts are budgeted for it)")
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens or c.max_new_tokens,
                                  "do_sample": c.do_sample, "pad_token_id": self.pad_token_id}
        if c.do_sample:
            kwargs.update(temperature=c.temperature, top_p=c.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if c.stop_at_newline:
            kwargs.update(stop_strings=["\n"], tokenizer=self.tokenizer)
        return kwargs

    def _inputs(self, items: Sequence[PreparedItem]) -> dict[str, torch.Tensor]:
        inputs = self._encode(items)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def _result(self, item: PreparedItem, raw: str, generated: int, seconds: float
                ) -> GeneratedAnswer:
        prompt = item.prompt
        return GeneratedAnswer(
            answer=clean_answer(raw), raw=raw, prompt=prompt.text, passage_ids=prompt.passage_ids,
            truncated_passages=sum(prompt.truncated), dropped_passages=prompt.dropped,
            prompt_tokens=prompt.num_tokens, generated_tokens=generated, seconds=seconds)

    def _run(self, items: Sequence[PreparedItem], max_new_tokens: int | None = None
             ) -> list[GeneratedAnswer]:
        start = time.perf_counter()
        inputs = self._inputs(items)
        width = inputs["input_ids"].shape[1]
        with self._lock, torch.inference_mode():
            output = self.model.generate(**inputs, **self._generation_kwargs(max_new_tokens))
        new = output[:, width:].cpu()
        raws = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        seconds = (time.perf_counter() - start) / len(items)
        counts = (new != self.pad_token_id).sum(dim=1).tolist()
        return [self._result(item, raw, n, seconds) for item, raw, n in zip(items, raws, counts)]

    @staticmethod
    def _failed(message: str, prompt: str = "") -> GeneratedAnswer:
        return GeneratedAnswer(answer="", raw="", prompt=prompt, error=message)

    def answer_batch(self, items: Sequence[QAItem], batch_size: int | None = None,
                     max_new_tokens: int | None = None) -> list[GeneratedAnswer]:
        batch_size = batch_size or self.config.batch_size
        self._generation_kwargs(max_new_tokens)  # validate before any work
        results: list[GeneratedAnswer | None] = [None] * len(items)
        ready: list[tuple[int, PreparedItem]] = []
        for i, item in enumerate(items):
            try:
                ready.append((i, self._prepare(item)))
            except ITEM_ERRORS as exc:
                results[i] = self._failed(f"{type(exc).__name__}: {exc}")
        # items with and without an image are never mixed in one batch
        groups = [[p for p in ready if p[1].image is not None],
                  [p for p in ready if p[1].image is None]]
        for group in groups:
            for start in range(0, len(group), batch_size):
                chunk = group[start:start + batch_size]
                for (i, _), answer in zip(chunk, self._run_isolated([p for _, p in chunk],
                                                                    max_new_tokens)):
                    results[i] = answer
        return [r if r is not None else self._failed("not answered") for r in results]

    def _run_isolated(self, chunk: list[PreparedItem], max_new_tokens: int | None = None
                      ) -> list[GeneratedAnswer]:
        """Run a batch; if it fails, run its items one by one so only the culprit fails."""
        try:
            return self._run(chunk, max_new_tokens)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            if len(chunk) == 1:
                logger.warning("generation failed: %s", exc)
                return [self._failed(f"{type(exc).__name__}: {exc}", chunk[0].prompt.text)]
            return [answer for item in chunk
                    for answer in self._run_isolated([item], max_new_tokens)]

    def stream(self, question: str, image: Any = None, passages: Sequence[Any] = (),
               max_new_tokens: int | None = None) -> AnswerStream:
        generation = self._generation_kwargs(max_new_tokens)
        item = self._prepare(QAItem(question, image, passages))
        inputs = self._inputs([item])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True,
                                        skip_special_tokens=True, timeout=600)
        failure: list[BaseException] = []
        start = time.perf_counter()
        counter = {"tokens": 0}

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    out = self.model.generate(**inputs, streamer=streamer, **generation)
                counter["tokens"] = int((out[0, inputs["input_ids"].shape[1]:]
                                         != self.pad_token_id).sum())
            except BaseException as exc:  # surfaced to the consumer below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()

        def pieces():
            for piece in streamer:
                if piece:
                    yield piece
            thread.join()
            if failure:
                raise failure[0]

        def finish(raw: str) -> GeneratedAnswer:
            return self._result(item, raw, counter["tokens"], time.perf_counter() - start)

        return AnswerStream(pieces(), finish, item.prompt.passage_ids)

    def build_prompt(self, question: str, passages: Sequence[Any] = (), has_image: bool = True,
                     extra_tokens: int = 0) -> BuiltPrompt:
        return self.builder.build(question, as_context_passages(passages), has_image, extra_tokens)
