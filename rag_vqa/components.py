"""The models and data a pipeline needs, each loaded on first use (once, thread-safe), with the
checks that make a wrong combination fail fast and say what to do."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from generator import Generator, build_generator
from retriever.index import MultiVectorIndex

from .config import RagConfig
from .kb import PassageStore
from .loading import LoadedRetriever, load_retriever

__all__ = ["Components", "IncompatibleIndexError", "MissingResourceError"]


class IncompatibleIndexError(ValueError):
    """The index was built with another retriever (or another vector shape)."""


class MissingResourceError(ValueError):
    """A required index or knowledge base is not configured or not found."""


class Components:
    NAMES = ("retriever", "generator", "index", "store")

    def __init__(self, config: RagConfig, **preloaded: Any) -> None:
        unknown = set(preloaded) - set(self.NAMES)
        if unknown:
            raise TypeError(f"unknown preloaded component(s): {sorted(unknown)}")
        self.config = config
        self._lock = threading.RLock()
        self._cache: dict[str, Any] = dict(preloaded)

    def _get(self, name: str, build) -> Any:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = build()
            return self._cache[name]

    @property
    def retriever(self) -> LoadedRetriever:
        settings = self.config.retriever
        return self._get("retriever", lambda: load_retriever(settings.model, settings.device,
                                                             settings.dtype))

    @property
    def generator(self) -> Generator:
        return self._get("generator", lambda: build_generator(self.config.generator))

    @property
    def index(self) -> MultiVectorIndex:
        return self._get("index", self._load_index)

    @property
    def store(self) -> PassageStore:
        return self._get("store", self._open_store)

    def load_all(self) -> None:
        _ = self.retriever, self.index, self.store, self.generator

    def _load_index(self) -> MultiVectorIndex:
        path = self.config.index.path
        if not path:
            raise MissingResourceError(
                "no index configured: build one with `rag-vqa index build KB --retriever ID "
                "--out INDEX` and pass it (index=INDEX, --index, or [index] path = ... in the "
                "config), or run `rag-vqa quickstart` for the bundled sample")
        if not Path(path).is_dir():
            raise MissingResourceError(f"index folder {path} does not exist")
        index = MultiVectorIndex.load(path, verify="size")
        self._check(index)
        return index

    def _check(self, index: MultiVectorIndex) -> None:
        loaded = self.retriever
        model = loaded.model
        built_with = index.manifest.get("metadata", {}).get("retriever") or {}
        dims = index.manifest["dims"]
        out_dim = model.config.query_config.output_dim
        if dims["dim"] != out_dim:
            raise IncompatibleIndexError(
                f"index {index.path} holds {dims['dim']}-d vectors but retriever {loaded.name} "
                f"outputs {out_dim}-d vectors; rebuild the index with this retriever")
        expected = built_with.get("config_sha256")
        if expected and expected != model.config_fingerprint():
            raise IncompatibleIndexError(
                f"index {index.path} was built with retriever {built_with.get('name')!r} "
                f"(config {expected[:12]}), not with {loaded.name!r} (config "
                f"{model.config_fingerprint()[:12]}). Use that retriever, or rebuild: "
                f"rag-vqa index build KB --retriever {loaded.name} --out {index.path} "
                "--overwrite")

    def _open_store(self) -> PassageStore:
        kb = self.config.index.kb
        if not kb:
            kb = (self.index.manifest.get("metadata", {}).get("kb") or {}).get("path")
        if not kb:
            raise MissingResourceError("no knowledge base configured for the index: pass kb= "
                                       "(or --kb, or [index] kb = ... in the config)")
        if not Path(kb).is_dir():
            raise MissingResourceError(f"knowledge base folder {kb} does not exist (the index "
                                       "records where it was built from; pass kb= to move it)")
        store = PassageStore.open(kb, image_root=self.config.index.images)
        if len(store) != self.index.num_rows:
            raise IncompatibleIndexError(f"knowledge base {kb} has {len(store)} passages but "
                                         f"the index {self.index.path} was built from "
                                         f"{self.index.num_rows}")
        return store
