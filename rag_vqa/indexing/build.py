"""``rag-vqa index build``: knowledge base + ReT retriever -> searchable multi-vector index.

Two resumable phases in the output folder: encoding (shards under ``encode/``, see shards.py)
and indexing (``MultiVectorIndex.build`` over the memory-mapped shards). The index manifest
records the retriever (name and config fingerprint), the knowledge base and the build report.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from retriever.errors import UserInputError
from retriever.index import MultiVectorIndex
from retriever.index.storage import MANIFEST

from ..kb import PassageStore
from ..loading import LoadedRetriever
from ..ray_runtime import RayOptions, versions
from .encode import MAX_PROBLEMS_KEPT, encode_shards
from .shards import ShardSet

__all__ = ["DEFAULT_SHARD_SIZE", "IndexBuildReport", "build_index"]

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 4096


@dataclass
class IndexBuildReport:
    passages: int
    shards: int
    shards_resumed: int
    images: dict[str, int]
    image_problems: list[dict[str, Any]] = field(default_factory=list)
    encode_seconds: float = 0.0
    index_seconds: float = 0.0
    passages_per_second: float = 0.0
    method: str = "plaid"
    index_path: str = ""
    # how the shards were encoded: engine ("local" or "ray"), workers, GPUs, versions, rates
    engine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kb_identity(store: PassageStore) -> dict[str, Any]:
    return {"path": str(store.folder.resolve()), "digest": store.digest, "passages": len(store)}


def build_index(kb_folder: str | Path, retriever: LoadedRetriever, out: str | Path, *,
                method: str = "plaid", nbits: int | None = None, batch_size: int = 32,
                shard_size: int = DEFAULT_SHARD_SIZE, workers: int = 1,
                keep_shards: bool = False, overwrite: bool = False,
                show_progress: bool | None = None, ray: RayOptions | str | None = None,
                **index_params: Any) -> IndexBuildReport:
    """Encode every passage of the KB and index the features; resumes an interrupted build.

    ``ray``: encode on a Ray cluster instead (an address such as "local" / "auto", or
    ``rag_vqa.ray_runtime.RayOptions``); the shards, the resume and the index are the same."""
    kb_folder, out = Path(kb_folder), Path(out)
    if batch_size < 1 or shard_size < 1:
        raise UserInputError("--batch-size and --shard-size must be at least 1")
    if (out / MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a built index; pass --overwrite to rebuild")
    with PassageStore.open(kb_folder) as store:
        total = len(store)
        doc_ids = store.ids()
        kb = _kb_identity(store)
    if total == 0:
        raise UserInputError(f"knowledge base {kb_folder} has no passages")
    model = retriever.model
    fingerprint = retriever.identity()
    shards = ShardSet(out / "encode", total, shard_size)
    resuming = shards.check_plan({"kb": kb, "retriever": fingerprint, "shard_size": shard_size,
                                  "dtype": str(model.dtype), "passages": total})
    if resuming:
        logger.info("resuming the unfinished build in %s", out)
    encoder, processor = model.document_encoder, model.processor("document")
    bar = tqdm(total=total, desc="encoding passages", unit="passage",
               disable=not (total > 256 if show_progress is None else show_progress))
    with bar:
        if ray is None:
            infos, resumed = encode_shards(kb_folder, encoder, processor, shards,
                                           batch_size=batch_size, workers=workers,
                                           on_rows=bar.update)
            engine = {"engine": "local", "workers": 1, "device": str(model.device),
                      "dataloader_workers": workers, **versions()}
        else:
            from .ray_build import encode_shards_on_ray

            infos, resumed, engine = encode_shards_on_ray(kb_folder, retriever, shards, ray,
                                                          batch_size=batch_size, workers=workers,
                                                          on_rows=bar.update)
    images: Counter[str] = Counter()
    problems: list[dict[str, Any]] = []
    for info in infos:
        images.update(info.images)
        problems.extend(info.problems[: max(0, MAX_PROBLEMS_KEPT - len(problems))])
    encode_seconds = sum(i.seconds for i in infos)
    report = IndexBuildReport(
        passages=total, shards=len(infos), shards_resumed=resumed,
        images=dict(images), image_problems=problems, encode_seconds=round(encode_seconds, 3),
        passages_per_second=round(total / encode_seconds, 2) if encode_seconds else 0.0,
        method=method, index_path=str(out), engine=engine)
    if images.get("broken") or images.get("missing"):
        logger.warning("%d broken and %d missing images: those passages were encoded text-only",
                       images.get("broken", 0), images.get("missing", 0))
    t0 = time.perf_counter()
    metadata = {"retriever": fingerprint, "kb": kb, "build_report": report.to_dict()}
    MultiVectorIndex.build(out, doc_ids, shards.arrays(), method=method, nbits=nbits,
                           overwrite=overwrite, metadata=metadata, show_progress=show_progress,
                           **index_params)
    report.index_seconds = round(time.perf_counter() - t0, 3)
    if not keep_shards:
        shards.remove()
    return report
