"""Turning (text, image) pairs into the tensors a ReT encoder takes, exactly as the reference does.

Missing modalities (spec section 4): a missing image becomes a black 336x336 RGB image through the
normal image processor with ``image_mask`` 0; a missing or empty text becomes "" with
``text_mask`` 0. Text is tokenised with the backbone's CLIP tokenizer, padded to the longest in the
batch and truncated at the tokenizer's maximum (77 for CLIP).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, PretrainedConfig

from .errors import UserError
from .hub import HubUnavailableError, hub_access
from .images import DEFAULT_MAX_PIXELS, ImageInput, load_image

__all__ = ["ReTInputs", "ReTProcessor", "ProcessorLoadError", "MISSING_IMAGE_SIZE",
           "DEFAULT_QUERY_INSTRUCTION", "query_text"]

logger = logging.getLogger(__name__)

MISSING_IMAGE_SIZE = 336
# The instruction ReT-M2KR pairs with InfoSeek/E-VQA-style questions (spec section 5).
DEFAULT_QUERY_INSTRUCTION = ("Retrieve documents that provide an answer to the question alongside "
                             "the image:")


def query_text(instruction: str | None, question: str | None) -> str:
    """The text of a query as ReT was trained: instruction + " " + question (spec section 5).

    The one place that joins them, for the training data, the retriever and the pipeline alike,
    so the text a model was trained on is the text it is queried with: both parts are stripped
    and an empty or missing part is left out (no stray space)."""
    return " ".join(part.strip() for part in (instruction, question) if part and part.strip())
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
_IMAGE_PROCESSOR_FILE = "preprocessor_config.json"


class ProcessorLoadError(UserError, RuntimeError):
    """The tokenizer or image processor of a checkpoint cannot be found or read."""


@dataclass
class ReTInputs:
    """One batch for :class:`~retriever.modeling_ret.ReTEncoder` (the reference's tensors)."""

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    text_mask: torch.Tensor
    image_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ReTInputs:
        """Move to ``device``; pixel values and modality masks take the model's float dtype."""
        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)
        return ReTInputs(cast(self.pixel_values), self.input_ids.to(device),
                         self.attention_mask.to(device), cast(self.text_mask),
                         cast(self.image_mask))

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def rows(self, index: Sequence[int] | torch.Tensor) -> ReTInputs:
        """A sub-batch (text padding beyond the sub-batch's longest text is kept: harmless)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ReTInputs(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def concat(parts: Sequence[ReTInputs]) -> ReTInputs:
        """One batch from several, text padded to the longest (padding never changes results)."""
        width = max(p.input_ids.shape[1] for p in parts)

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=0)

        return ReTInputs(torch.cat([p.pixel_values for p in parts]),
                         torch.cat([pad(p.input_ids) for p in parts]),
                         torch.cat([pad(p.attention_mask) for p in parts]),
                         torch.cat([p.text_mask for p in parts]),
                         torch.cat([p.image_mask for p in parts]))


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _load_tokenizer(source: str | os.PathLike, config: PretrainedConfig | None = None, **hub: Any):
    """``config`` (the text backbone's) tells AutoTokenizer the tokenizer family, so it does not
    read the folder's config.json, which describes the whole retriever."""
    try:
        hub = {**hub, "local_files_only": hub_access(
            str(source), "tokenizer", cache_dir=hub.get("cache_dir"),
            filename="tokenizer_config.json", local_files_only=bool(hub.get("local_files_only")))}
        if config is not None:
            hub = {**hub, "config": config}
        return AutoTokenizer.from_pretrained(str(source), **hub)
    except HubUnavailableError as exc:
        raise ProcessorLoadError(f"cannot load the text backbone's tokenizer: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ProcessorLoadError(f"cannot load the text backbone's tokenizer from {source}: {exc}"
                                 ) from exc


def _load_image_processor(source: str | os.PathLike, **hub: Any):
    try:
        hub = {**hub, "local_files_only": hub_access(
            str(source), "image processor", cache_dir=hub.get("cache_dir"),
            filename="preprocessor_config.json",
            local_files_only=bool(hub.get("local_files_only")))}
        try:  # transformers >= 5: choose the PIL backend (no torchvision dependency)
            return AutoImageProcessor.from_pretrained(str(source), backend="pil", **hub)
        except TypeError:
            return AutoImageProcessor.from_pretrained(str(source), **hub)
    except HubUnavailableError as exc:
        raise ProcessorLoadError(f"cannot load the vision backbone's image processor: {exc}") \
            from exc
    except (OSError, ValueError) as exc:
        raise ProcessorLoadError(f"cannot load the vision backbone's image processor from {source}:"
                                 f" {exc}") from exc


class ReTProcessor:
    """Tokenizer + image processor of one ReT tower, with the reference's missing-modality rules."""

    def __init__(self, tokenizer: Any, image_processor: Any, *, max_length: int | None = None,
                 max_image_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        model_max = getattr(tokenizer, "model_max_length", None)
        if max_length is None:
            max_length = model_max if model_max and model_max < 100_000 else 77
        self.max_length = int(max_length)
        self.max_image_pixels = max_image_pixels
        self._missing_pixels: torch.Tensor | None = None

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder_or_id: str | os.PathLike, **hub: Any) -> ReTProcessor:
        """Tokenizer and image processor saved together (e.g. by :meth:`save_pretrained`)."""
        return cls(_load_tokenizer(folder_or_id, **hub), _load_image_processor(folder_or_id, **hub))

    @classmethod
    def for_checkpoint(cls, folder: str | os.PathLike, text_config: PretrainedConfig,
                       vision_config: PretrainedConfig, **hub: Any) -> ReTProcessor:
        """From the checkpoint folder when it holds them, else from the backbones' recorded names
        (``_name_or_path`` of the nested configs), as the reference does."""
        folder = Path(folder)
        text_source: Any = folder if _has_tokenizer(folder) else text_config.name_or_path
        vision_source: Any = (folder if (folder / _IMAGE_PROCESSOR_FILE).is_file()
                              else vision_config.name_or_path)
        for kind, source in (("tokenizer", text_source), ("image processor", vision_source)):
            if not source:
                raise ProcessorLoadError(
                    f"{folder} has no {kind} files and its config records no backbone name "
                    "(_name_or_path) to load one from; save the processor into the folder")
        tokenizer = _load_tokenizer(text_source, text_config, **hub)
        max_length = min(getattr(tokenizer, "model_max_length", 77) or 77,
                         getattr(text_config, "max_position_embeddings", 77))
        return cls(tokenizer, _load_image_processor(vision_source, **hub), max_length=max_length)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(str(folder))
        self.image_processor.save_pretrained(str(folder))

    # -- text ----------------------------------------------------------------------------------
    @staticmethod
    def _clean_texts(texts: Sequence[str | None]) -> list[str]:
        out = []
        for i, text in enumerate(texts):
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError(f"text {i} must be a string or None, got {type(text).__name__}")
            out.append(text)
        return out

    def tokenize(self, texts: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids and attention_mask, padded to the longest text in the batch."""
        enc = self.tokenizer(self._clean_texts(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt",
                             return_token_type_ids=False)
        return enc["input_ids"], enc["attention_mask"]

    def token_lengths(self, texts: Sequence[str | None]) -> list[int]:
        """Token count of each text after truncation (used to batch similar lengths together)."""
        enc = self.tokenizer(self._clean_texts(texts), padding=False, truncation=True,
                             max_length=self.max_length, return_token_type_ids=False,
                             return_attention_mask=False)
        return [len(ids) for ids in enc["input_ids"]]

    # -- images --------------------------------------------------------------------------------
    def load_image(self, image: ImageInput, label: str | None = None) -> Image.Image | None:
        if image is None:
            return None
        return load_image(image, max_pixels=self.max_image_pixels, label=label)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    @property
    def missing_image_pixels(self) -> torch.Tensor:
        """The processed black placeholder image, computed once."""
        if self._missing_pixels is None:
            black = Image.new("RGB", (MISSING_IMAGE_SIZE, MISSING_IMAGE_SIZE), color="black")
            self._missing_pixels = self._pixels([black])[0]
        return self._missing_pixels

    def pixel_values(self, images: Sequence[Image.Image | None]) -> torch.Tensor:
        """(B, 3, H, W); ``None`` entries get the black placeholder."""
        present = [img for img in images if img is not None]
        processed = iter(self._pixels(present)) if present else iter(())
        placeholder = self.missing_image_pixels
        return torch.stack([next(processed) if img is not None else placeholder for img in images])

    # -- both ------------------------------------------------------------------------------------
    def __call__(self, texts: Sequence[str | None], images: Sequence[ImageInput] | None = None,
                 labels: Sequence[str] | None = None) -> ReTInputs:
        """Tensors for a batch. ``labels`` name each item in image errors (default: the path)."""
        if images is None:
            images = [None] * len(texts)
        if len(images) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(images)} images; pass one image "
                             "(or None) per text")
        clean = self._clean_texts(texts)
        loaded = [self.load_image(img, labels[i] if labels else None)
                  for i, img in enumerate(images)]
        input_ids, attention_mask = self.tokenize(clean)
        return ReTInputs(
            pixel_values=self.pixel_values(loaded),
            input_ids=input_ids,
            attention_mask=attention_mask,
            text_mask=torch.tensor([1.0 if t else 0.0 for t in clean]),
            image_mask=torch.tensor([1.0 if img is not None else 0.0 for img in loaded]),
        )
