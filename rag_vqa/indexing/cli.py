"""``rag-vqa index build`` and ``rag-vqa index info``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from retriever.index import MultiVectorIndex

from ..loading import DEFAULT_RETRIEVER, load_retriever
from .build import DEFAULT_SHARD_SIZE, build_index

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
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--device", default=None, help="cpu (default), cuda, cuda:N or auto")
    build.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")
    build.add_argument("--method", choices=["plaid", "exact"], default="plaid")
    build.add_argument("--nbits", type=int, choices=[2, 4, 8], default=4)
    build.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                       help="passages per resumable shard")
    build.add_argument("--workers", type=int, default=min(4, max(1, (os.cpu_count() or 2) - 1)),
                       help="DataLoader worker processes decoding images")
    build.add_argument("--keep-shards", action="store_true",
                       help="keep the float16 shards after indexing")
    build.add_argument("--overwrite", action="store_true", help="replace an existing index")
    build.add_argument("--json", action="store_true", help="print the build report as JSON")
    build.set_defaults(handler=_cmd_build)

    info = actions.add_parser("info", help="check an index and describe it")
    info.add_argument("index")
    info.add_argument("--verify", choices=["full", "size", "none"], default="full")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_cmd_info)


def _cmd_build(args: argparse.Namespace) -> int:
    loaded = load_retriever(args.retriever, args.device, args.dtype)
    if loaded.note:
        print(f"NOTE: {loaded.note}", file=sys.stderr)
    report = build_index(args.kb, loaded, args.out, method=args.method, nbits=args.nbits,
                         batch_size=args.batch_size, shard_size=args.shard_size,
                         workers=args.workers, keep_shards=args.keep_shards,
                         overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    images = report.images
    print(f"indexed {report.passages} passages into {args.out} ({report.method}, "
          f"{report.shards} shards, {report.shards_resumed} resumed)")
    print(f"encoding: {report.encode_seconds:.1f}s ({report.passages_per_second:.1f} passages/s)"
          f"   indexing: {report.index_seconds:.1f}s")
    print("images: " + ", ".join(f"{k} {v}" for k, v in sorted(images.items())))
    for problem in report.image_problems[:5]:
        print(f"  {problem['status']}: {problem['passage_id']}: {problem['reason']}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    index = MultiVectorIndex.load(args.index, verify=args.verify)
    manifest = index.manifest
    info = {"path": str(index.path), "method": index.method, "documents": len(index),
            "rows": index.num_rows, "dims": manifest["dims"], "params": manifest["params"],
            "resident_bytes": index.resident_bytes(), "created": manifest["created"],
            "updated": manifest["updated"], "rebuild_advised": manifest["rebuild_advised"],
            "retriever": manifest["metadata"].get("retriever"),
            "kb": manifest["metadata"].get("kb"), "verified": args.verify}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['path']}: {info['method']} index of {info['documents']} documents "
          f"({info['dims']['tokens']}x{info['dims']['dim']}), checked: {args.verify}")
    print(f"  parameters: {info['params']}")
    print(f"  memory for search: {info['resident_bytes']['per_document']} bytes/document")
    if info["retriever"]:
        print(f"  retriever: {info['retriever']['name']} (config {info['retriever']['config_sha256'][:12]})")
    if info["rebuild_advised"]:
        print(f"  rebuild advised: {info['rebuild_advised']}")
    return 0
