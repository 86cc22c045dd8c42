"""Choosing and loading the retriever by name: a hub id, a folder, "tiny", "sample" or "auto"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retriever import CheckpointError, ProcessorLoadError, ReTRetriever
from retriever.runtime import resolve_device, resolve_dtype
from retriever.tiny import TINY_NAME, build_tiny_retriever

from .notes import TINY_WARNING
from .sample_models import SAMPLE, SAMPLE_RETRIEVER_DIR, SAMPLE_RETRIEVER_NAME

__all__ = ["DEFAULT_RETRIEVER", "LoadedRetriever", "load_retriever", "TINY_WARNING",
           "BUILTIN_RETRIEVERS"]

logger = logging.getLogger(__name__)

DEFAULT_RETRIEVER = "aimagelab/ReT-CLIP-ViT-L-14"
# names that never go to the hub
BUILTIN_RETRIEVERS = frozenset({"auto", "tiny", TINY_NAME, SAMPLE, SAMPLE_RETRIEVER_NAME})
KINDS = ("tiny", "sample", "released", "checkpoint")


@dataclass
class LoadedRetriever:
    """A loaded retriever and what it is: ``kind`` is "tiny" (untrained, random), "sample"
    (trained here on the bundled 30-flag sample), "released" (an aimagelab/ReT-* checkpoint) or
    "checkpoint" (any other folder or hub id). Notes shown with answers are derived from it."""

    model: ReTRetriever
    name: str
    is_tiny: bool
    note: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            self.kind = "tiny" if self.is_tiny else (
                "released" if self.name.startswith("aimagelab/ReT-") else "checkpoint")
        if self.kind not in KINDS:
            raise ValueError(f"retriever kind must be one of {KINDS}, got {self.kind!r}")

    def identity(self) -> dict[str, Any]:
        """The retriever's name and fingerprints: what indexes and evaluation runs record."""
        return {"name": self.name, "config_sha256": self.model.config_fingerprint(),
                "weights_xxh3": self.model.weights_fingerprint(), "is_tiny": self.is_tiny}


def _is_sample_folder(name: str) -> bool:
    try:
        return Path(name).expanduser().resolve() == SAMPLE_RETRIEVER_DIR.resolve()
    except OSError:
        return False


def load_retriever(name: str = "auto", device: str | None = None,
                   dtype: str | None = None) -> LoadedRetriever:
    """``"tiny"``: a seeded random tiny model (offline smoke runs). ``"sample"``: the small ReT
    trained on the bundled sample, shipped with the package. ``"auto"``: the default released
    checkpoint if it is already downloaded, else the tiny model, saying so. Anything else: a hub
    id or a local folder, loaded with ReTRetriever.from_pretrained."""
    if name in ("tiny", TINY_NAME):
        dev = resolve_device(device)
        model = build_tiny_retriever(seed=0).to(device=dev, dtype=resolve_dtype(dtype, dev))
        return LoadedRetriever(model, TINY_NAME, True, TINY_WARNING)
    if name in (SAMPLE, SAMPLE_RETRIEVER_NAME) or _is_sample_folder(name):
        if not (SAMPLE_RETRIEVER_DIR / "config.json").is_file():
            raise CheckpointError(f"the sample retriever is missing from {SAMPLE_RETRIEVER_DIR}; "
                                  "make it with `python -m rag_vqa.sample_training`")
        model = ReTRetriever.from_pretrained(SAMPLE_RETRIEVER_DIR, device, dtype)
        model.config.name_or_path = SAMPLE_RETRIEVER_NAME
        return LoadedRetriever(model, SAMPLE_RETRIEVER_NAME, False, kind="sample")
    if name == "auto":
        try:
            model = ReTRetriever.from_pretrained(DEFAULT_RETRIEVER, device, dtype,
                                                 local_files_only=True)
            return LoadedRetriever(model, DEFAULT_RETRIEVER, False)
        except (CheckpointError, ProcessorLoadError) as exc:
            logger.debug("default retriever not available offline: %s", exc)
            tiny = load_retriever("tiny", device, dtype)
            tiny.note = (f"{DEFAULT_RETRIEVER} is not downloaded, so {TINY_WARNING}. Pass "
                         f"--retriever {DEFAULT_RETRIEVER} to download and use the real model.")
            return tiny
    return LoadedRetriever(ReTRetriever.from_pretrained(name, device, dtype), name, False)
