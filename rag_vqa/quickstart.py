"""The bundled sample, end to end: import its knowledge base, index it with the profile's
retriever, and answer its questions. Used by ``rag-vqa quickstart``, ``ask --sample`` and the
demo. Work is cached under ~/.cache/rag-vqa/quickstart and reused (both steps resume)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever.index.storage import read_manifest as read_index_manifest

from .config import PROFILES, TINY, RagConfig, load_config
from .indexing import build_index
from .kb import PassageStore, import_kb
from .loading import load_retriever
from .pipeline import Answer, RagVQA
from .samples import SAMPLE_KB, question_image, sample_questions

__all__ = ["default_cache", "choose_profile", "sample_pipeline", "run_quickstart",
           "QuickstartResult"]

logger = logging.getLogger(__name__)


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rag-vqa" / "quickstart"


def _cached(repo_id: str) -> bool:
    """Whether a hub model is already downloaded (nothing is fetched to find out)."""
    if Path(repo_id).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except (ImportError, ValueError):
        return False


def choose_profile(requested: str = "auto") -> tuple[str, str]:
    """The profile to run and a note saying why (``auto``: the default models when they are
    downloaded, else the tiny ones)."""
    if requested != "auto":
        return requested, ""
    default = PROFILES["default"]
    missing = [m for m in (default["retriever"]["model"], default["generator"]["model"])
               if not _cached(m)]
    if not missing:
        return "default", ""
    return TINY, (f"{' and '.join(missing)} not downloaded: running the UNTRAINED tiny models, "
                  "whose answers are meaningless. Run `rag-vqa quickstart --profile default` "
                  "(downloads ~15 GB) for real answers.")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _kb_ready(folder: Path) -> bool:
    try:
        PassageStore.open(folder).close()  # raises unless complete, current and intact
        return True
    except (OSError, ValueError):
        return False


def _index_ready(folder: Path) -> bool:
    try:
        read_index_manifest(folder)  # the index's load verifies the rest
        return True
    except (OSError, ValueError):
        return False


def _built_from(index: Path, kb: Path) -> bool:
    """Whether the cached index was built from this very KB (a re-import changes its digest)."""
    with PassageStore.open(kb, verify="none") as store:
        digest = store.digest
    recorded = read_index_manifest(index)["metadata"].get("kb") or {}
    return recorded.get("digest") == digest


def sample_pipeline(profile: str = TINY, cache: Path | None = None,
                    **overrides: Any) -> RagVQA:
    """A pipeline over the bundled sample, importing and indexing it on first use."""
    cache = cache or default_cache()
    config: RagConfig = load_config(None, profile=profile, **overrides)
    kb = cache / "kb"
    if not _kb_ready(kb):  # absent, unfinished, damaged or from an older version: (re)import
        logger.info("importing the sample knowledge base into %s", kb)
        import_kb("ret-jsonl", SAMPLE_KB / "passages.jsonl", kb, SAMPLE_KB, progress=False,
                  resume=False)
    loaded = load_retriever(config.retriever.model, config.retriever.device,
                            config.retriever.dtype)
    index = cache / f"index-{_slug(loaded.name)}-{loaded.model.config_fingerprint()[:8]}"
    if not _index_ready(index) or not _built_from(index, kb):
        logger.info("indexing the sample with %s into %s", loaded.name, index)
        build_index(kb, loaded, index, method="exact", workers=0, show_progress=False,
                    overwrite=True)
    return RagVQA(load_config(None, profile=profile, index={"path": str(index), "kb": str(kb)},
                              **overrides), retriever=loaded)


@dataclass
class QuickstartResult:
    profile: str
    note: str
    answers: list[tuple[Any, Answer]] = field(default_factory=list)  # (SampleQuestion, Answer)

    @property
    def retrieval_hits(self) -> int:
        return sum(any(e.passage_id in q.passage_id for e in a.evidence[:1])
                   for q, a in self.answers)


def run_quickstart(profile: str = "auto", cache: Path | None = None, k: int = 3
                   ) -> QuickstartResult:
    chosen, note = choose_profile(profile)
    pipe = sample_pipeline(chosen, cache, k=k)
    questions = sample_questions()
    answers = pipe.answer_batch([(question_image(q), q.question) for q in questions])
    return QuickstartResult(chosen, note, list(zip(questions, answers)))
