"""The models and data a pipeline needs, each loaded on first use (once, thread-safe), with the
checks that make a wrong combination fail fast and say what to do."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from generator import Generator, GeneratorLoadError, build_generator
from generator.tiny import TINY_GENERATOR_NAME
from retriever import CheckpointError, ProcessorLoadError
from retriever.errors import UserError
from retriever.hub import HubUnavailableError, hub_access, looks_like_hub_id
from retriever.index import MultiVectorIndex

from .config import RagConfig
from .kb import PassageStore
from .loading import BUILTIN_RETRIEVERS, LoadedRetriever, load_retriever

__all__ = ["Components", "IncompatibleIndexError", "MissingResourceError", "index_metadata"]

logger = logging.getLogger(__name__)


class IncompatibleIndexError(UserError, ValueError):
    """The index was built with another retriever (or another vector shape)."""


class MissingResourceError(UserError, ValueError):
    """A required index or knowledge base is not configured or not found."""


def index_metadata(folder: str | Path) -> dict[str, Any]:
    """What an index's manifest records about its build (``retriever``, ``kb`` with its path and
    digest), the manifest checked but the index not loaded: for reports and cache checks."""
    return MultiVectorIndex.read_info(folder).metadata


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
        return self._get("retriever", self._load_retriever)

    def _load_retriever(self) -> LoadedRetriever:
        """The configured retriever; when none was chosen, the one the index was built with."""
        settings = self.config.retriever
        built_with = None if self.config.retriever_explicit else self._index_retriever()
        if not built_with:
            return load_retriever(settings.model, settings.device, settings.dtype)
        try:
            return load_retriever(built_with, settings.device, settings.dtype)
        except (CheckpointError, ProcessorLoadError) as exc:
            raise self._unloadable(built_with, exc) from exc

    def _unloadable(self, built_with: str, exc: Exception) -> MissingResourceError:
        return MissingResourceError(
            f"the index {self.config.index.path} was built with retriever {built_with!r}, "
            f"which cannot be loaded here: {exc} Pass the retriever (--retriever ID_OR_DIR, "
            "or [retriever] model = ... in the config)")

    def _index_retriever(self) -> str | None:
        """The retriever name an index's manifest records (read without loading the index)."""
        if "index" in self._cache:
            return self._cache["index"].info.retriever.get("name")
        if self.config.index.path and Path(self.config.index.path).is_dir():
            return MultiVectorIndex.read_info(self.config.index.path).retriever.get("name")
        return None

    @property
    def generator(self) -> Generator:
        return self._get("generator", lambda: build_generator(self.config.generator))

    @property
    def index(self) -> MultiVectorIndex:
        return self._get("index", self._load_index)

    @property
    def store(self) -> PassageStore:
        return self._get("store", self._open_store)

    def check_names(self) -> None:
        """Fail now, not at the first answer, on model names that cannot load here: a folder
        that does not exist, a hub model neither cached nor reachable, a missing index."""
        path = self.config.index.path
        if "index" not in self._cache and path and not Path(path).is_dir():
            raise MissingResourceError(f"index folder {path} does not exist")
        if "retriever" not in self._cache:
            built_with = None if self.config.retriever_explicit else self._index_retriever()
            name = built_with or self.config.retriever.model
            try:
                if name not in BUILTIN_RETRIEVERS:
                    try:
                        hub_access(name, "ReT retriever", probe_cached=False)
                    except HubUnavailableError as exc:
                        raise CheckpointError(f"cannot load ReT retriever: {exc}") from exc
                    if not looks_like_hub_id(name) and not Path(name).expanduser().is_dir():
                        raise CheckpointError(f"no such checkpoint folder: {name}")
            except CheckpointError as exc:
                if built_with:
                    raise self._unloadable(built_with, exc) from exc
                raise
        if "generator" not in self._cache:
            generator = self.config.generator
            if generator.model != TINY_GENERATOR_NAME:
                try:
                    hub_access(generator.model, "generator model", probe_cached=False,
                               filename=generator.gguf_file or "config.json",
                               revision=generator.revision,
                               local_files_only=generator.local_files_only)
                except HubUnavailableError as exc:
                    raise GeneratorLoadError(f"cannot load generator model "
                                             f"{generator.model!r}: {exc}") from exc
                if not looks_like_hub_id(generator.model) and \
                        not Path(generator.model).expanduser().exists():
                    raise GeneratorLoadError(f"generator model {generator.model!r} is neither a "
                                             "local folder nor a hub id")

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
        index = MultiVectorIndex.load(path, verify=self.config.index.verify)
        self._check(index)
        return index

    def _check(self, index: MultiVectorIndex) -> None:
        loaded = self.retriever
        model = loaded.model
        built_with = index.info.retriever
        out_dim = model.config.query_config.output_dim
        if index.info.dim != out_dim:
            raise IncompatibleIndexError(
                f"index {index.path} holds {index.info.dim}-d vectors but retriever {loaded.name} "
                f"outputs {out_dim}-d vectors; rebuild the index with this retriever")
        rebuild = (f"Use that retriever (--retriever {built_with.get('name')}), or rebuild the "
                   f"index: rag-vqa index build KB --retriever {loaded.name} --out {index.path} "
                   "--overwrite")
        expected = built_with.get("config_sha256")
        if expected and expected != model.config_fingerprint():
            raise IncompatibleIndexError(
                f"index {index.path} was built with retriever {built_with.get('name')!r} "
                f"(config {expected[:12]}), not with {loaded.name!r} (config "
                f"{model.config_fingerprint()[:12]}): another architecture. {rebuild}")
        weights = built_with.get("weights_xxh3")
        if weights and weights != model.weights_fingerprint():
            message = (f"index {index.path} was built with retriever {built_with.get('name')!r} "
                       f"(weights {weights[:12]}), but {loaded.name!r} has other weights ("
                       f"{model.weights_fingerprint()[:12]}): the same architecture fine-tuned "
                       f"or re-trained, whose vectors do not match the index. {rebuild}")
            if not self.config.index.allow_retriever_mismatch:
                raise IncompatibleIndexError(message + "; or allow it knowingly with "
                                             "--allow-retriever-mismatch ([index] "
                                             "allow_retriever_mismatch = true)")
            logger.warning("%s (allowed by allow_retriever_mismatch)", message)

    def _open_store(self) -> PassageStore:
        kb = self.config.index.kb
        if not kb:
            kb = self.index.info.kb.get("path")
        if not kb:
            raise MissingResourceError("no knowledge base configured for the index: pass kb= "
                                       "(or --kb, or [index] kb = ... in the config)")
        if not Path(kb).is_dir():
            raise MissingResourceError(f"knowledge base folder {kb} does not exist (the index "
                                       "records where it was built from; pass kb= to move it)")
        store = PassageStore.open(kb, image_root=self.config.index.images,
                                  verify=self.config.index.verify)
        if len(store) != self.index.num_rows:
            store.close()
            raise IncompatibleIndexError(f"knowledge base {kb} has {len(store)} passages but "
                                         f"the index {self.index.path} was built from "
                                         f"{self.index.num_rows}")
        recorded = self.index.info.kb.get("digest")
        if recorded and recorded != store.digest:
            store.close()
            raise IncompatibleIndexError(
                f"knowledge base {kb} is not the one the index {self.index.path} was built from "
                f"(its passages file has digest {store.digest}, the index recorded {recorded}): "
                "it was re-imported or replaced. Point --kb to the original knowledge base, or "
                f"rebuild the index: rag-vqa index build {kb} --out {self.index.path} --overwrite")
        return store
