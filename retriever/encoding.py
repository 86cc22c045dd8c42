"""Batched encoding of many (text, image) items with one ReT tower.

Items are sorted by token length so batches carry little padding (padding never changes results),
on an accelerator the next batch is prepared (images decoded, text tokenised) on a worker thread
while the model runs the current one (on CPU both would compete for the same cores), and
features land in one preallocated float32 tensor in input order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from tqdm.auto import tqdm

from .images import ImageInput
from .processing_ret import ReTInputs, ReTProcessor

__all__ = ["encode_items", "eval_mode"]

logger = logging.getLogger(__name__)


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


def encode_items(encoder: nn.Module, processor: ReTProcessor, texts: Sequence[str | None],
                 images: Sequence[ImageInput] | None, *, batch_size: int = 32,
                 show_progress: bool | None = None, desc: str = "encoding") -> torch.Tensor:
    """Features (N, k, dim) float32 on CPU, in input order, computed under inference mode."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts, images = _check_inputs(texts, images)
    param = next(encoder.parameters())
    device, dtype = param.device, param.dtype
    config = encoder.config
    k = 1 if config.use_pooler_features else config.num_queries
    out = torch.empty(len(texts), k, config.output_dim, dtype=torch.float32)
    if not texts:
        return out
    lengths = processor.token_lengths(texts)
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def prepare(idx: list[int]) -> ReTInputs:
        return processor([texts[i] for i in idx], [images[i] for i in idx])

    if show_progress is None:
        show_progress = len(batches) > 4
    with eval_mode(encoder), torch.inference_mode(), _prepared(prepare, batches, device) as ready, \
            tqdm(total=len(texts), desc=desc, unit="item", disable=not show_progress) as bar:
        for idx, inputs in zip(batches, ready):
            features = encoder(**inputs.to(device, dtype).as_kwargs())
            out[torch.tensor(idx)] = features.float().cpu()
            bar.update(len(idx))
    return out
