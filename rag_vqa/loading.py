"""Choosing and loading the retriever by name: a hub id, a folder, "tiny" or "auto"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from retriever import CheckpointError, ProcessorLoadError, ReTRetriever
from retriever.runtime import resolve_device, resolve_dtype
from retriever.tiny import TINY_NAME, build_tiny_retriever

__all__ = ["DEFAULT_RETRIEVER", "LoadedRetriever", "load_retriever", "TINY_WARNING"]

logger = logging.getLogger(__name__)

DEFAULT_RETRIEVER = "aimagelab/ReT-CLIP-ViT-L-14"
TINY_WARNING = ("the tiny retriever is UNTRAINED (random weights): its rankings and scores are "
                "meaningless and only show that the machinery works")


@dataclass
class LoadedRetriever:
    model: ReTRetriever
    name: str
    is_tiny: bool
    note: str = ""

    def identity(self) -> dict[str, Any]:
        """The retriever's name and fingerprints: what indexes and evaluation runs record."""
        return {"name": self.name, "config_sha256": self.model.config_fingerprint(),
                "weights_xxh3": self.model.weights_fingerprint(), "is_tiny": self.is_tiny}


def load_retriever(name: str = "auto", device: str | None = None,
                   dtype: str | None = None) -> LoadedRetriever:
    """``"tiny"``: a seeded random tiny model (offline smoke runs). ``"auto"``: the default
    released checkpoint if it is already downloaded, else the tiny model, saying so. Anything
    else: a hub id or a local folder, loaded with ReTRetriever.from_pretrained."""
    if name in ("tiny", TINY_NAME):
        dev = resolve_device(device)
        model = build_tiny_retriever(seed=0).to(device=dev, dtype=resolve_dtype(dtype, dev))
        return LoadedRetriever(model, TINY_NAME, True, TINY_WARNING)
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
