"""``rag-vqa kb ...``: import a published knowledge base, inspect one.

:func:`register` adds the command group to the main parser; handlers return an exit code and
raise ``ValueError`` subclasses for user errors (the main CLI turns those into exit code 2).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..cli_args import non_negative_int, positive_int
from .errors import KBError
from .importer import import_kb
from .readers import ARTICLE_FORMATS, FORMATS
from .splitting import PassageSplitter
from .store import PassageStore

__all__ = ["register", "cmd_import", "cmd_stats", "load_tokenizer"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``kb import`` and ``kb stats`` to an ``add_subparsers()`` object."""
    kb = subparsers.add_parser("kb", help="knowledge bases: import published formats, inspect")
    actions = kb.add_subparsers(dest="action", metavar="ACTION", required=True)

    imp = actions.add_parser(
        "import", help="import a knowledge base into a KB folder (resumable)",
        description="Stream a published knowledge base into a KB folder (manifest.json + "
                    "passages.sqlite). Articles are split into passages that fit the retriever's "
                    "77-token window. An interrupted import continues where it stopped when the "
                    "same command is run again.")
    imp.add_argument("--format", required=True, choices=FORMATS, help="source format")
    imp.add_argument("source", help="source file (or a folder of shards for ret-jsonl/m2kr)")
    imp.add_argument("--images", metavar="DIR", default=None,
                     help="image root: passage image paths are relative to it; URL images are "
                          "looked up under DIR/urls/ (nothing is downloaded)")
    imp.add_argument("--out", required=True, metavar="KB", help="KB folder to write")
    imp.add_argument("--skip-bad", action="store_true",
                     help="skip and count malformed records instead of stopping at the first")
    imp.add_argument("--limit", type=non_negative_int, default=None, metavar="N",
                     help="import only the first N records (for a quick try)")
    imp.add_argument("--max-tokens", type=positive_int, default=75,
                     help="token budget per passage, context prefix included (default 75)")
    imp.add_argument("--overlap", type=non_negative_int, default=16,
                     help="tokens shared by consecutive pieces of a long paragraph (default 16)")
    imp.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                     help="count tokens with this Hugging Face fast tokenizer (default: an "
                          "offline, conservative heuristic)")
    imp.add_argument("--no-context-prefix", action="store_true",
                     help="do not prepend 'title - section: ' to split passages")
    imp.add_argument("--no-resume", action="store_true",
                     help="start over even if KB holds an unfinished (or finished) import")
    imp.add_argument("--json", action="store_true", help="print the import report as JSON")
    imp.set_defaults(handler=cmd_import)

    stats = actions.add_parser("stats", help="counts, text lengths and image coverage of a KB")
    stats.add_argument("kb", metavar="KB", help="KB folder")
    stats.add_argument("--images", metavar="DIR", default=None,
                       help="image root to check against (default: the one given at import)")
    stats.add_argument("--check-images", action="store_true",
                       help="check which image files exist under the image root")
    stats.add_argument("--verify", nargs="?", const="full", default="size",
                       choices=("full", "size", "none"),
                       help="--verify (= full): check the digest of the passages file and "
                            "SQLite's integrity of every page; default 'size': the file's size "
                            "and the manifest's seal")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=cmd_stats)
    return kb


def load_tokenizer(name: str) -> Any:
    """A fast Hugging Face tokenizer by hub id or folder, or a clear user error."""
    from transformers import AutoTokenizer

    from retriever.hub import HubUnavailableError, hub_access

    try:
        local = hub_access(name, "tokenizer", filename="tokenizer_config.json")
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError, ImportError, HubUnavailableError) as exc:
        raise KBError(f"cannot load tokenizer {name!r}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise KBError(f"tokenizer {name!r} has no fast (Rust) version; splitting needs its "
                      "token offsets")
    return tokenizer


def cmd_import(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise KBError("--limit must be zero or more")
    splitter = None
    if args.format in ARTICLE_FORMATS:
        tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
        try:
            splitter = PassageSplitter(max_tokens=args.max_tokens, overlap=args.overlap,
                                       tokenizer=tokenizer,
                                       context_prefix=not args.no_context_prefix)
        except ValueError as exc:
            raise KBError(f"bad splitting options: {exc}") from exc
    report = import_kb(args.format, args.source, args.out, args.images, skip_bad=args.skip_bad,
                       limit=args.limit, splitter=splitter, resume=not args.no_resume)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0
    resumed = f" (resumed after {report.resumed_from} records)" if report.resumed_from else ""
    print(f"imported {report.passages_written} passages from {report.records_read} records "
          f"({report.articles} articles) into {report.out} in {report.seconds:.1f}s{resumed}")
    if report.bad_records or report.refused_image_paths:
        print(f"skipped {report.bad_records} malformed records, refused "
              f"{report.refused_image_paths} image paths; first examples:")
        for example in report.bad_examples:
            print(f"  {example['location']}: {example['reason']}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with PassageStore.open(args.kb, image_root=args.images, verify=args.verify) as store:
        if args.verify == "full":
            store.check_integrity()
        stats = store.stats(check_images=args.check_images)
        manifest = store.manifest or {}
    if args.json:
        print(json.dumps({"kb": args.kb, "format": manifest.get("format"),
                          "image_root": None if store.image_root is None else str(store.image_root),
                          "verified": args.verify, "digest": store.digest,
                          **stats.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    print(f"{args.kb}  (format {manifest.get('format')}, image root {store.image_root}, "
          f"checked: {args.verify})")
    print(f"  passages {stats.passages}   articles {stats.articles}   with text {stats.with_text}"
          f"   empty text {stats.empty_text}")
    print(f"  image references {stats.with_image} ({stats.path_images} paths, {stats.url_images} "
          "URLs)")
    if stats.images_checked:
        print(f"  image files present {stats.images_present}   missing {stats.images_missing}   "
              f"refused {stats.images_refused}")
    if stats.text_length:
        t = stats.text_length
        print(f"  text length (chars): min {t['min']}  median {t['p50']:.0f}  p90 {t['p90']:.0f}"
              f"  p99 {t['p99']:.0f}  max {t['max']}  mean {t['mean']:.1f}")
    return 0
