"""``rag-vqa index build`` and ``rag-vqa index info``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from retriever.errors import UserInputError
from retriever.index import MultiVectorIndex
from retriever.index.storage import VERIFY_LEVELS

from ..cli_args import device, dtype, non_negative_int, positive_int
from ..kb import PassageStore
from ..kb.errors import KBError
from ..loading import DEFAULT_RETRIEVER, load_retriever
from ..ray_runtime import add_ray_arguments, check_reachable, options_from_args
from .build import DEFAULT_SHARD_SIZE, build_index
from .sharing import register as register_sharing

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("index", help="build and inspect multi-vector indexes")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build", help="encode a knowledge base with ReT and index it (resumable)",
        description="Encode every passage of KB with the ReT document encoder (in shards: a "
                    "killed build resumes) and build a multi-vector index in OUT.")
    build.add_argument("kb", help="knowledge-base folder (from `rag-vqa kb import`)")
    build.add_argument("--retriever", default="auto",
                       help=f"hub id or folder of a ReT checkpoint, 'tiny', or 'auto' (default: "
                            f"{DEFAULT_RETRIEVER} when downloaded, else tiny)")
    build.add_argument("--out", required=True, help="index folder to create")
    build.add_argument("--batch-size", type=positive_int, default=32)
    build.add_argument("--device", type=device, default=None,
                       help="cpu (default), cuda, cuda:N or auto")
    build.add_argument("--dtype", type=dtype, default=None,
                       help="float32 (default), bfloat16 or float16")
    build.add_argument("--method", choices=["plaid", "exact"], default="plaid")
    build.add_argument("--nbits", type=int, choices=[2, 4, 8], default=None,
                       help="bits per residual dimension of a plaid index (default 4)")
    build.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE,
                       help="passages per resumable shard")
    build.add_argument("--workers", type=non_negative_int,
                       default=min(4, max(1, (os.cpu_count() or 2) - 1)),
                       help="DataLoader worker processes decoding images (0: in-process)")
    build.add_argument("--keep-shards", action="store_true",
                       help="keep the float16 shards after indexing")
    build.add_argument("--overwrite", action="store_true",
                       help="replace an existing index (built beside it; the old one stays "
                            "usable until the new one is complete)")
    build.add_argument("--centroids", metavar="FROM_INDEX", default=None,
                       help="reuse the trained centroids and quantiser of this plaid index "
                            "instead of training new ones, so that indexes built apart (other "
                            "machines, slices of a KB) can be merged with `rag-vqa index merge`")
    build.add_argument("--json", action="store_true", help="print the build report as JSON")
    add_ray_arguments(build, decoding=True)
    build.set_defaults(handler=_cmd_build)

    info = actions.add_parser("info", help="check an index and describe it")
    info.add_argument("index")
    info.add_argument("--verify", nargs="?", const="full", default="size",
                      choices=VERIFY_LEVELS,
                      help="--verify (= full): check the digest of every file of the index and "
                           "of its knowledge base, and the knowledge base's SQLite integrity; "
                           "default 'size': sizes, shapes and the manifests' seals")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_cmd_info)

    merge = actions.add_parser(
        "merge", help="join indexes into one sharded index searched as one",
        description="Make OUT a sharded index whose parts are the given indexes (built with "
                    "the same retriever and, for plaid, the same centroids: --centroids). Their "
                    "files are hard-linked (copied across file systems); OUT is replaced "
                    "atomically. Search merges every part's top k exactly; add and remove go "
                    "to the part that holds (or will hold) each id.")
    merge.add_argument("indexes", nargs="+", metavar="INDEX")
    merge.add_argument("--out", required=True, help="sharded index folder to create")
    merge.add_argument("--overwrite", action="store_true", help="replace an index in OUT")
    merge.add_argument("--copy", action="store_true", help="copy the files instead of linking")
    merge.add_argument("--verify", default="full", choices=VERIFY_LEVELS,
                       help="how the parts are checked first (default: every digest)")
    merge.add_argument("--json", action="store_true")
    merge.set_defaults(handler=_cmd_merge)
    register_sharing(actions)


def _cmd_build(args: argparse.Namespace) -> int:
    ray = options_from_args(args)
    if ray is not None:  # fail in seconds, before a model loads; the driver only fingerprints it
        if args.device not in (None, "cpu"):
            raise UserInputError("--device sets where a local build encodes; with --ray the "
                                 "workers use their GPUs (--gpus-per-worker)")
        check_reachable(ray)
    loaded = load_retriever(args.retriever, None if ray else args.device, args.dtype)
    if loaded.note:
        print(f"NOTE: {loaded.note}", file=sys.stderr)
    report = build_index(args.kb, loaded, args.out, method=args.method, nbits=args.nbits,
                         batch_size=args.batch_size, shard_size=args.shard_size,
                         workers=args.workers, keep_shards=args.keep_shards,
                         overwrite=args.overwrite, ray=ray, centroids=args.centroids)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    images = report.images
    print(f"indexed {report.passages} passages into {args.out} ({report.method}, "
          f"{report.shards} shards, {report.shards_resumed} resumed)")
    print(f"encoding: {report.encode_seconds:.1f}s ({report.passages_per_second:.1f} passages/s)"
          f"   indexing: {report.index_seconds:.1f}s")
    engine = report.engine
    if engine.get("engine") == "ray" and "wall_seconds" in engine:
        print(f"on Ray: {engine['workers']} workers x {engine['gpus_per_worker']:g} GPUs on "
              f"{engine['nodes']} node(s), {engine['wall_seconds']:.1f}s wall "
              f"({engine['passages_per_second']:.1f} passages/s)")
    print("images: " + ", ".join(f"{k} {v}" for k, v in sorted(images.items())))
    for problem in report.image_problems[:5]:
        print(f"  {problem['status']}: {problem['passage_id']}: {problem['reason']}")
    return 0


def _check_kb(recorded: dict[str, Any] | None, level: str) -> dict[str, Any]:
    """The index's knowledge base: found, intact at ``level``, the one the index was built from."""
    if not recorded or not recorded.get("path"):
        return {"status": "unknown", "detail": "the index records no knowledge base"}
    out: dict[str, Any] = {"path": recorded["path"], "verified": level}
    if not Path(recorded["path"]).is_dir():
        return {**out, "status": "not found",
                "detail": "moved or deleted; pass --kb to the commands that use this index"}
    try:
        with PassageStore.open(recorded["path"], verify=level) as store:
            out["passages"] = len(store)
            if level == "full":
                store.check_integrity()
            if recorded.get("digest") and recorded["digest"] != store.digest:
                return {**out, "status": "different", "detail": "not the knowledge base the "
                        "index was built from (re-imported or replaced): rebuild the index"}
    except KBError as exc:
        return {**out, "status": "damaged", "detail": str(exc)}
    return {**out, "status": "ok"}


def _cmd_info(args: argparse.Namespace) -> int:
    index = MultiVectorIndex.load(args.index, verify=args.verify)
    built = index.info
    kb = _check_kb(built.kb, args.verify)
    info = {"path": str(index.path), "method": index.method, "documents": len(index),
            "rows": index.num_rows, "dims": built.dims, "params": built.params,
            "resident_bytes": index.resident_bytes(), "created": built.created,
            "updated": built.updated, "rebuild_advised": built.rebuild_advised,
            "retriever": built.retriever or None, "kb": kb,
            "built_with": built.build_report.get("engine"),
            "verified": args.verify, "digest": index.digest}
    damaged = kb["status"] in ("damaged", "different")
    if args.json:
        print(json.dumps(info, indent=2))
        return 2 if damaged else 0
    print(f"{info['path']}: {info['method']} index of {info['documents']} documents "
          f"({info['dims']['tokens']}x{info['dims']['dim']}), checked: {args.verify}")
    print(f"  parameters: {info['params']}")
    print(f"  memory for search: {info['resident_bytes']['per_document']} bytes/document")
    retriever = info["retriever"]
    if retriever:
        print(f"  retriever: {retriever.get('name')} (config "
              f"{str(retriever.get('config_sha256'))[:12]}, weights "
              f"{str(retriever.get('weights_xxh3'))[:12]})")
    built = info["built_with"]
    if built:
        on_ray = built.get("engine") == "ray"
        workers = f", {built.get('workers')} worker(s) x {built.get('gpus_per_worker', 0):g} " \
            f"GPUs, ray {built.get('ray')}" if on_ray else ""
        print(f"  built with: {built.get('engine')}{workers}, rag-vqa {built.get('rag_vqa')}")
    print(f"  knowledge base: {kb.get('path', '?')}: {kb['status']}"
          + (f" ({kb['detail']})" if kb.get("detail") else ""))
    if info["rebuild_advised"]:
        print(f"  rebuild advised: {info['rebuild_advised']}")
    if damaged:
        print(f"rag-vqa: error: the knowledge base of {info['path']} is {kb['status']}: "
              f"{kb['detail']}", file=sys.stderr)
        return 2
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from retriever.index.sharded import merge_indexes

    index = merge_indexes(args.indexes, args.out, overwrite=args.overwrite, link=not args.copy,
                          verify=args.verify)
    info = {"path": str(index.path), "parts": len(index.parts), "documents": len(index),
            "method": index.method, "digest": index.digest}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{info['path']}: {info['method']} index of {info['documents']} documents in "
              f"{info['parts']} parts")
    return 0
