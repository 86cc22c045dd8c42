"""The two-tower ReT retriever: a query encoder and a document encoder sharing CLIP backbones.

``ReTRetriever.from_pretrained`` reads released checkpoints (aimagelab/ReT-*) unchanged and our
own saves; ``save_pretrained`` writes the released layout back (shared backbones stored once,
under ``query_model``), plus the tokenizer and image processor so the folder stands alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash
from torch import nn

from .checkpoint import (
    CheckpointError,
    iter_checkpoint_tensors,
    load_mapped_tensors,
    resolve_pretrained_dir,
    save_sharded_safetensors,
    tower_key_map,
)
from .configuration_ret import ConfigError, ReTRetrieverConfig
from .encoding import encode_items
from .fileio import atomic_write_text, sha256_hex
from .images import ImageInput
from .modeling_ret import BackboneStates, ReTEncoder, present_rows, run_backbones
from .processing_ret import (
    DEFAULT_QUERY_INSTRUCTION,
    ProcessorLoadError,
    ReTInputs,
    ReTProcessor,
    query_text,
)
from .runtime import resolve_device, resolve_dtype

__all__ = ["ReTRetriever", "RetrieverOutput", "DEFAULT_QUERY_INSTRUCTION"]

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"


def _skip_weight_init() -> contextlib.AbstractContextManager:
    """Weights are about to be overwritten by the checkpoint: skip random initialisation."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def _size_in_bytes(size: int | str) -> int:
    if isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    text = size.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def _weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    digest = xxhash.xxh3_128()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)};".encode())
        digest.update(np.ascontiguousarray(tensor.numpy()).view(np.uint8))
    return digest.hexdigest()


@dataclass
class RetrieverOutput:
    """L2-normalised features of a query batch and a passage batch."""

    query_features: torch.Tensor
    passage_features: torch.Tensor


class ReTRetriever(nn.Module):
    """ReT_Q and ReT_D. Use :meth:`encode_queries` / :meth:`encode_documents` for lists of inputs;
    ``query_encoder`` / ``document_encoder`` take the reference's tensors directly."""

    def __init__(self, config: ReTRetrieverConfig, processor: ReTProcessor | None = None,
                 document_processor: ReTProcessor | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.query_encoder = ReTEncoder(config.query_config)
        if config.share_query_passage_models:
            self.document_encoder = self.query_encoder
        else:
            q = self.query_encoder
            self.document_encoder = ReTEncoder(
                config.passage_config,
                text_model=q.text_model if config.share_text_models else None,
                vision_model=q.vision_model if config.share_vision_models else None)
        self._query_processor = processor
        self._document_processor = document_processor or processor
        # (checkpoint folder, hub options): processors load on first use from there, so a
        # checkpoint holding only config.json and weights loads and runs on tensors
        self._processor_source: tuple[str, dict[str, Any]] | None = None
        self._fingerprint: tuple[str, tuple] | None = None
        self._source_folder: str | None = None   # the checkpoint folder it was loaded from

    # -- processors (tokenizer + image processor), loaded when first needed -----------------------
    @property
    def query_processor(self) -> ReTProcessor | None:
        if self._query_processor is None and self._processor_source is not None:
            self._load_processors()
        return self._query_processor

    @query_processor.setter
    def query_processor(self, value: ReTProcessor | None) -> None:
        self._query_processor = value

    @property
    def document_processor(self) -> ReTProcessor | None:
        if self._document_processor is None and self._processor_source is not None:
            self._load_processors()
        return self._document_processor

    @document_processor.setter
    def document_processor(self, value: ReTProcessor | None) -> None:
        self._document_processor = value

    def _load_processors(self) -> None:
        folder, hub = self._processor_source
        qc, pc = self.config.query_config, self.config.passage_config
        query = ReTProcessor.for_checkpoint(folder, qc.text_config, qc.vision_config, **hub)
        document = query if self.shares_backbones else ReTProcessor.for_checkpoint(
            folder, pc.text_config, pc.vision_config, **hub)
        self._query_processor, self._document_processor = query, document
        self._processor_source = None

    def processor(self, which: str) -> ReTProcessor:
        """The processor of the ``"query"`` or ``"document"`` tower, loading it if needed."""
        if which not in ("query", "document"):
            raise ValueError(f"which must be 'query' or 'document', got {which!r}")
        proc = self.query_processor if which == "query" else self.document_processor
        if proc is None:
            raise ProcessorLoadError(
                "this retriever has no processor (tokenizer and image processor) to turn texts "
                "and images into tensors: load it with from_pretrained from a folder that holds "
                "them (or whose config names its backbones), or pass processor=ReTProcessor(...)")
        return proc

    # -- properties ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def shares_backbones(self) -> bool:
        q, d = self.query_encoder, self.document_encoder
        return q.text_model is d.text_model and q.vision_model is d.vision_model

    # -- released layout ------------------------------------------------------------------------
    def released_key_map(self, fixed_buffers: bool = False) -> dict[str, str]:
        """Released checkpoint key -> our state-dict key (each shared tensor listed once)."""
        cfg = self.config
        mapping = tower_key_map(self.query_encoder, "query_model.", "query_encoder.",
                                fixed_buffers=fixed_buffers)
        if not cfg.share_query_passage_models:
            mapping.update(tower_key_map(
                self.document_encoder, "passage_model.", "document_encoder.",
                text=not cfg.share_text_models, vision=not cfg.share_vision_models,
                fixed_buffers=fixed_buffers))
        return mapping

    def config_fingerprint(self) -> str:
        """sha256 of the configuration (without names, versions and dtype): indexes record it
        so that queries are never searched with a retriever other than the one that built them."""
        volatile = {"_name_or_path", "transformers_version", "dtype", "torch_dtype"}

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items() if k not in volatile}
            return value

        canonical = json.dumps(clean(self.config.to_dict()), sort_keys=True, default=str)
        return sha256_hex(canonical)

    def _weights_state(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def weights_fingerprint(self) -> str:
        """xxh3-128 of every weight as float32, in the released key order. Indexes record it next
        to the config fingerprint: a fine-tuned copy of the same architecture differs here. A
        checkpoint loaded in bfloat16 keeps the fingerprint of its stored weights; it is
        recomputed whenever a weight changes (training)."""
        state = self._weights_state()
        if self._fingerprint is not None and self._fingerprint[1] == state:
            return self._fingerprint[0]
        digest = _weights_digest(self.released_state_dict())
        self._fingerprint = (digest, state)
        return digest

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        state = self.state_dict()
        return {released: state[ours] for released, ours in self.released_key_map().items()}

    def load_released_weights(self, folder: str | os.PathLike) -> None:
        """Fill every parameter from the checkpoint's weight files, strictly."""
        load_mapped_tensors(self, self.released_key_map(), iter_checkpoint_tensors(folder),
                            source=str(folder), fixed=self.released_key_map(fixed_buffers=True))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike,
                        device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, *, revision: str | None = None,
                        cache_dir: str | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, load_processor: bool = True
                        ) -> ReTRetriever:
        """Load a released ReT checkpoint (hub id or folder) or one of our saves.

        ``device`` defaults to CPU and ``dtype`` to float32; pass e.g. ``device="cuda",
        dtype="bfloat16"`` for GPU inference.
        """
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        folder = resolve_pretrained_dir(name_or_path, revision=revision, cache_dir=cache_dir,
                                        local_files_only=local_files_only, token=token)
        config = cls.load_config(folder)
        with _skip_weight_init():
            model = cls(config)
        model.load_released_weights(folder)
        if load_processor:  # loaded on first use: the towers work on tensors without one
            model._processor_source = (str(folder), dict(cache_dir=cache_dir,
                                                         local_files_only=local_files_only,
                                                         token=token))
        model.config.name_or_path = str(name_or_path)
        model._source_folder = str(folder)
        digest = _weights_digest(model.released_state_dict()) if dt != torch.float32 else None
        model = model.to(device=dev, dtype=dt).eval()
        if digest is not None:  # of the stored weights, before rounding to the new dtype
            model._fingerprint = (digest, model._weights_state())
        logger.info("loaded ReT retriever %s (%s, %s)", name_or_path, dev, dt)
        return model

    @staticmethod
    def load_config(folder: str | os.PathLike) -> ReTRetrieverConfig:
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{folder} has no {CONFIG_NAME}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
        model_type = raw.pop("model_type", None)
        if model_type != "retriever":
            raise CheckpointError(f"{path} has model_type {model_type!r}; a ReT retriever "
                                  "checkpoint has model_type 'retriever'")
        try:
            return ReTRetrieverConfig(**raw)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{path}: {exc}") from exc

    def save_pretrained(self, save_directory: str | os.PathLike,
                        max_shard_size: int | str = "5GB") -> None:
        """Write config.json, safetensors weights (released key layout) and the processor."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config["torch_dtype"] = str(self.dtype).removeprefix("torch.")
        atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_sharded_safetensors(self.released_state_dict(), folder, _size_in_bytes(max_shard_size))
        try:
            query_processor = self.query_processor
        except ProcessorLoadError as exc:
            logger.warning("saved without a processor (%s); the folder needs the backbones' "
                           "tokenizer and image processor to encode texts and images", exc)
            return
        if query_processor is not None:
            query_processor.save_pretrained(folder)
        if self.document_processor is not query_processor:
            logger.warning("the document tower uses its own backbones; only the query tower's "
                           "processor was saved, the document processor loads from its "
                           "backbone name")

    def push_to_hub(self, repo_id: str, *, private: bool = False, token: str | None = None,
                    hub_dir: str | os.PathLike | None = None,
                    commit_message: str | None = None) -> str:
        """Save in the released layout with a model card and upload as a model repository
        (``hub_dir``: a local folder standing in for the hub). A model loaded from a folder of
        ``rag-vqa train`` keeps its training record (training.json) for the card."""
        import shutil
        import tempfile

        from .sharing import TRAINING_FILE, push_retriever

        with tempfile.TemporaryDirectory(prefix="ret-push-") as tmp:
            self.save_pretrained(tmp)
            source = Path(self._source_folder or "") / TRAINING_FILE
            if self._source_folder and source.is_file():
                shutil.copy2(source, Path(tmp) / TRAINING_FILE)
            return push_retriever(tmp, repo_id, hub_dir=hub_dir, private=private, token=token,
                                  commit_message=commit_message)

    # -- tensors in, features out --------------------------------------------------------------
    def forward(self, query: ReTInputs | Mapping[str, torch.Tensor],
                passage: ReTInputs | Mapping[str, torch.Tensor],
                query_states: BackboneStates | None = None,
                passage_states: BackboneStates | None = None) -> RetrieverOutput:
        """Features of a query batch and a passage batch. With shared backbones, both batches go
        through each backbone in one pass. Precomputed backbone states (training with cached
        features) skip the backbones."""
        q = query if isinstance(query, ReTInputs) else ReTInputs(**query)
        p = passage if isinstance(passage, ReTInputs) else ReTInputs(**passage)
        if query_states is not None and passage_states is not None:
            return RetrieverOutput(
                self.query_encoder.head(query_states, q.text_mask, q.image_mask),
                self.document_encoder.head(passage_states, p.text_mask, p.image_mask))
        if not self.shares_backbones:
            return RetrieverOutput(self.query_encoder(**q.as_kwargs()),
                                   self.document_encoder(**p.as_kwargs()))
        width = max(q.input_ids.shape[1], p.input_ids.shape[1])

        def pad(t: torch.Tensor) -> torch.Tensor:
            return nn.functional.pad(t, (0, width - t.shape[1]), value=0)

        enc_q, enc_d = self.query_encoder, self.document_encoder
        states = run_backbones(enc_q.text_model, enc_q.vision_model,
                               torch.cat([pad(q.input_ids), pad(p.input_ids)]),
                               torch.cat([pad(q.attention_mask), pad(p.attention_mask)]),
                               torch.cat([q.pixel_values, p.pixel_values]),
                               present_rows(torch.cat([q.text_mask, p.text_mask])),
                               present_rows(torch.cat([q.image_mask, p.image_mask])))
        nq = len(q)
        q_states = states.select(enc_q.config.text_layer_indices, enc_q.config.vision_layer_indices,
                                 slice(0, nq))
        p_states = states.select(enc_d.config.text_layer_indices, enc_d.config.vision_layer_indices,
                                 slice(nq, None))
        return RetrieverOutput(enc_q.head(q_states, q.text_mask, q.image_mask),
                               enc_d.head(p_states, p.text_mask, p.image_mask))

    # -- lists in, features out ----------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str | None],
                       images: Sequence[ImageInput] | None = None,
                       *, batch_size: int = 32, instruction: str | None = None,
                       show_progress: bool | None = None) -> torch.Tensor:
        """Query features (N, 32, 128), float32 on CPU. Texts are used as given; pass
        ``instruction`` (e.g. DEFAULT_QUERY_INSTRUCTION) to prefix it as ReT was trained
        (:func:`~retriever.processing_ret.query_text`)."""
        if instruction:
            texts = [query_text(instruction, t) for t in texts]
        return encode_items(self.query_encoder, self.processor("query"), texts, images,
                            batch_size=batch_size, show_progress=show_progress,
                            desc="encoding queries")

    def encode_documents(self, texts: Sequence[str | None],
                         images: Sequence[ImageInput] | None = None, *, batch_size: int = 32,
                         show_progress: bool | None = None) -> torch.Tensor:
        """Document features (N, 32, 128), float32 on CPU; an image may be None, a text empty."""
        return encode_items(self.document_encoder, self.processor("document"), texts, images,
                            batch_size=batch_size, show_progress=show_progress,
                            desc="encoding documents")

    def extra_repr(self) -> str:
        return f"name_or_path={getattr(self.config, 'name_or_path', '')!r}"

