"""What verifying an index and its knowledge base costs at load: every file's xxh3 digest
("full", the default of every command), sizes and structure only ("size"), or the manifests'
seals only ("none"), against loading with no check at all (the previous release's "none").

    python ../shared/bench/gen_data.py --n 1000000 --out bench-data
    python bench/verify.py --docs bench-data/docs_N1000000.npy --work bench-data/verify

The plaid index (with its float16 rescoring copy) is built once under --work and reused; a
knowledge base of as many synthetic passages is imported beside it. Each load runs in a fresh
process, twice: the first after evicting the files from the page cache when the kernel lets us
(``cold``), the second with the files cached (``warm``), the usual case of a machine serving.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _fresh import run_fresh


def _evict(paths: list[Path]) -> bool:
    """Drop the files from the page cache (POSIX_FADV_DONTNEED); False where not supported."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return True


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def build_job(docs: str, out: str, queue) -> None:
    from retriever.index import MultiVectorIndex

    emb = np.load(docs, mmap_mode="r")
    start = time.perf_counter()
    MultiVectorIndex.build(out, [f"p{i}" for i in range(len(emb))], emb, method="plaid",
                           overwrite=True, show_progress=True)
    queue.put({"seconds": time.perf_counter() - start})


def kb_job(n: int, out: str, queue) -> None:
    from rag_vqa.kb import import_kb

    source = Path(out).with_suffix(".jsonl")
    rng = np.random.default_rng(0)
    words = np.array("the bridge tower river museum painting bird flower city king island lake "
                     "was built completed in by of and a capital country".split())
    with open(source, "w", encoding="utf-8") as handle:
        for i in range(n):
            text = " ".join(rng.choice(words, size=60))
            handle.write(json.dumps({"passage_id": f"p{i}", "passage_text": text,
                                     "passage_image_path": f"images/{i}.jpg",
                                     "title": f"Article {i // 4}"}) + "\n")
    import_kb("ret-jsonl", source, out, progress=False)
    source.unlink()
    queue.put({})


def load_index_job(path: str, verify: str, queue) -> None:
    from retriever.index import MultiVectorIndex

    start = time.perf_counter()
    index = MultiVectorIndex.load(path, verify=verify, show_progress=False)
    queue.put({"seconds": time.perf_counter() - start, "documents": len(index)})


def load_kb_job(path: str, verify: str, queue) -> None:
    from rag_vqa.kb import PassageStore

    start = time.perf_counter()
    with PassageStore.open(path, verify=verify) as store:
        queue.put({"seconds": time.perf_counter() - start, "passages": len(store)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", required=True, help="(N, 32, 128) float16 .npy")
    parser.add_argument("--work", required=True, help="folder for the index and the KB (reused)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = np.load(args.docs, mmap_mode="r").shape[0]
    index, kb = work / f"index-N{n}", work / f"kb-N{n}"
    if not (index / "manifest.json").exists():
        print(f"building the plaid index of {n} documents: "
              f"{run_fresh(build_job, args.docs, str(index))['seconds']:.0f} s")
    if not (kb / "manifest.json").exists():
        run_fresh(kb_job, n, str(kb))
    sizes = {"index": sum(p.stat().st_size for p in _files(index)),
             "kb": sum(p.stat().st_size for p in _files(kb))}
    rows = []
    for what, path, job in (("index", index, load_index_job), ("kb", kb, load_kb_job)):
        for verify in ("full", "size", "none"):
            cold = run_fresh(job, str(path), verify)["seconds"] if _evict(_files(path)) else None
            warm = min(run_fresh(job, str(path), verify)["seconds"] for _ in range(2))
            rows.append((what, verify, cold, warm))
    print(f"\n{n} documents: index {sizes['index'] / 2**30:.2f} GiB on disk, knowledge base "
          f"{sizes['kb'] / 2**30:.2f} GiB\n")
    print("| what | verify | cold load s | warm load s |")
    print("|---|---|---|---|")
    for what, verify, cold, warm in rows:
        print(f"| {what} | {verify} | {'n/a' if cold is None else f'{cold:.2f}'} | {warm:.2f} |")


if __name__ == "__main__":
    main()
