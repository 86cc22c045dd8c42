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

from retriever.index import MultiVectorIndex

from .components import index_metadata
from .config import PROFILES, SAMPLE, TINY, RagConfig, load_config
from .indexing import build_index
from .kb import PassageStore, import_kb
from .loading import load_retriever
from .notes import TINY_NOTE
from .pipeline import Answer, RagVQA
from .sample_models import sample_available
from .samples import SAMPLE_KB, question_image, sample_passages, sample_questions

__all__ = ["default_cache", "choose_profile", "profile_available", "sample_pipeline",
           "run_quickstart", "QuickstartResult", "answer_is_right", "uses_sample_kb"]

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


def profile_available(profile: str) -> str | None:
    """None when the profile's models can load here without downloading, else what is
    missing (the demo lists only the profiles that can load)."""
    if profile == TINY:
        return None
    if profile == SAMPLE:
        return sample_available()
    settings = PROFILES[profile]
    missing = [m for m in (settings["retriever"]["model"], settings["generator"]["model"])
               if not _cached(m)]
    return f"{' and '.join(missing)} not downloaded" if missing else None


def choose_profile(requested: str = "auto") -> tuple[str, str]:
    """The profile to run and why (``auto``: the default models when they are downloaded,
    else the offline ``sample`` profile, else the untrained tiny one)."""
    if requested != "auto":
        return requested, ""
    missing = profile_available("default")
    if missing is None:
        return "default", ""
    sample_missing = profile_available(SAMPLE)
    if sample_missing is None:
        return SAMPLE, (f"{missing}: running the offline `sample` profile. `rag-vqa quickstart "
                        "--profile default` downloads the released models (~15 GB).")
    return TINY, (f"{missing} and {sample_missing}: running the tiny profile, {TINY_NOTE}. Run "
                  "`rag-vqa quickstart --profile default` (downloads ~15 GB) for real answers.")


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
        MultiVectorIndex.read_info(folder)  # the index's load verifies the rest
        return True
    except (OSError, ValueError):
        return False


def _built_from(index: Path, kb: Path) -> bool:
    """Whether the cached index was built from this very KB (a re-import changes its digest)."""
    with PassageStore.open(kb, verify="none") as store:
        digest = store.digest
    recorded = index_metadata(index).get("kb") or {}
    return recorded.get("digest") == digest


def sample_pipeline(profile: str = TINY, cache: Path | None = None,
                    **overrides: Any) -> RagVQA:
    """A pipeline over the bundled sample, importing and indexing it on first use (one index
    per retriever architecture and weights)."""
    cache = cache or default_cache()
    config: RagConfig = load_config(None, profile=profile, **overrides)
    kb = cache / "kb"
    if not _kb_ready(kb):  # absent, unfinished, damaged or from an older version: (re)import
        logger.info("importing the sample knowledge base into %s", kb)
        import_kb("ret-jsonl", SAMPLE_KB / "passages.jsonl", kb, SAMPLE_KB, progress=False,
                  resume=False)
    loaded = load_retriever(config.retriever.model, config.retriever.device,
                            config.retriever.dtype)
    model = loaded.model
    index = cache / (f"index-{_slug(loaded.name)}-{model.config_fingerprint()[:8]}-"
                     f"{model.weights_fingerprint()[:8]}")
    if not _index_ready(index) or not _built_from(index, kb):
        logger.info("indexing the sample with %s into %s", loaded.name, index)
        build_index(kb, loaded, index, method="exact", workers=0, show_progress=False,
                    overwrite=True)
    return RagVQA(load_config(None, profile=profile, index={"path": str(index), "kb": str(kb)},
                              **overrides), retriever=loaded)


def uses_sample_kb(pipeline: RagVQA) -> bool:
    """Whether the pipeline searches the bundled sample (its examples then make sense)."""
    store = pipeline.components.store
    ids = {p.passage_id for p in sample_passages()}
    return len(store) == len(ids) and set(store.ids()) == ids


def answer_is_right(answer: str, expected: list[str]) -> bool:
    """The official E-VQA exact match (its answer normalisation), best over the alternatives."""
    from eval.metrics.evqa import single_answer_em

    return any(single_answer_em(reference, answer) for reference in expected)


@dataclass
class QuickstartResult:
    profile: str
    reason: str                  # why this profile (auto), or ""
    note: str                    # what answered (rag_vqa.notes)
    kb: str
    index: str
    answers: list[tuple[Any, Answer]] = field(default_factory=list)  # (SampleQuestion, Answer)

    @property
    def retrieval_hits(self) -> int:
        return sum(any(e.passage_id in q.passage_id for e in a.evidence[:1])
                   for q, a in self.answers)

    @property
    def answer_hits(self) -> int:
        return sum(a.error is None and answer_is_right(a.answer, q.answer)
                   for q, a in self.answers)


def run_quickstart(profile: str = "auto", cache: Path | None = None, k: int = 3
                   ) -> QuickstartResult:
    chosen, reason = choose_profile(profile)
    pipe = sample_pipeline(chosen, cache, k=k)
    questions = sample_questions()
    answers = pipe.answer_batch([(question_image(q), q.question) for q in questions])
    return QuickstartResult(chosen, reason, pipe.note, str(pipe.config.index.kb),
                            str(pipe.config.index.path), list(zip(questions, answers)))
