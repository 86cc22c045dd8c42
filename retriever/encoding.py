"""Batched encoding of many (text, image) items with one ReT tower.

Items are sorted by token length so batches carry little padding (padding never changes results),
on an accelerator the next batch is prepared (images decoded, text tokenised) on a worker thread
while the model runs the current one (on CPU both would compete for the same cores), and
features land in one preallocated float32 tensor in input order.

:func:`encode_batches` is the one encoding loop: it takes prepared batches from any source (the
thread above, or the index build's DataLoader reading a knowledge base) and hands each batch's
features to a sink (a tensor here, a shard of the index there).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from .images import ImageInput
from .processing_ret import ReTInputs, ReTProcessor

__all__ = ["encode_items", "encode_batches", "encode_prepared", "feature_shape", "length_batches",
           "eval_mode"]

logger = logging.getLogger(__name__)

K = TypeVar("K")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, restoring each submodule's previous training flag."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


@contextlib.contextmanager
def _prepared(prepare: Callable[[list[int]], ReTInputs], batches: list[list[int]],
              device: torch.device) -> Iterator[Iterator[ReTInputs]]:
    """Prepared batches in order; one batch ahead on a worker thread unless the model is on CPU."""
    if device.type == "cpu":
        yield (prepare(idx) for idx in batches)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        def ahead() -> Iterator[ReTInputs]:
            pending = pool.submit(prepare, batches[0])
            for n in range(len(batches)):
                inputs = pending.result()
                if n + 1 < len(batches):
                    pending = pool.submit(prepare, batches[n + 1])
                yield inputs
        yield ahead()


def _check_inputs(texts: Sequence[str | None], images: Sequence[ImageInput] | None
                  ) -> tuple[list[str | None], list[ImageInput]]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    images = [None] * len(texts) if images is None else list(images)
    if len(images) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(images)} images; pass one image (or "
                         "None) per text")
    return texts, images


def feature_shape(encoder: nn.Module) -> tuple[int, int]:
    """(vectors, dim) of one item's features."""
    config = encoder.config
    return (1 if config.use_pooler_features else config.num_queries), config.output_dim


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions grouped into batches of similar token length, longest first (ties in order)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def encode_prepared(encoder: nn.Module, inputs: ReTInputs) -> torch.Tensor:
    """Features of one prepared batch, float32 on CPU, run in the encoder's device and dtype; the
    caller holds eval and inference mode (as :func:`encode_batches` does)."""
    param = next(encoder.parameters())
    return encoder(**inputs.to(param.device, param.dtype).as_kwargs()).float().cpu()


def encode_batches(encoder: nn.Module, source: Iterable[tuple[K, ReTInputs]],
                   sink: Callable[[K, torch.Tensor], Any]) -> None:
    """Run every ``(key, prepared inputs)`` of ``source`` (a DataLoader, a generator) through
    ``encoder`` in eval and inference mode; ``sink(key, features)`` gets each batch's features
    (float32, CPU) as it is done, so the caller decides where they go."""
    with eval_mode(encoder), torch.inference_mode():
        for key, inputs in source:
            sink(key, encode_prepared(encoder, inputs))


def encode_items(encoder: nn.Module, processor: ReTProcessor, texts: Sequence[str | None],
                 images: Sequence[ImageInput] | None, *, batch_size: int = 32,
                 show_progress: bool | None = None, desc: str = "encoding") -> torch.Tensor:
    """Features (N, k, dim) float32 on CPU, in input order, computed under inference mode."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts, images = _check_inputs(texts, images)
    device = next(encoder.parameters()).device
    out = torch.empty(len(texts), *feature_shape(encoder), dtype=torch.float32)
    if not texts:
        return out
    batches = length_batches(processor.token_lengths(texts), batch_size)

    def prepare(idx: list[int]) -> ReTInputs:
        return processor([texts[i] for i in idx], [images[i] for i in idx])

    if show_progress is None:
        show_progress = len(batches) > 4
    with _prepared(prepare, batches, device) as ready, \
            tqdm(total=len(texts), desc=desc, unit="item", disable=not show_progress) as bar:
        def sink(idx: list[int], features: torch.Tensor) -> None:
            out[torch.tensor(idx)] = features
            bar.update(len(idx))

        encode_batches(encoder, zip(batches, ready), sink)
    return out
