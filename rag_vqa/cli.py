"""The ``rag-vqa`` command: one entry point, subcommands, --help everywhere.

Exit codes: 0 ok, 2 bad usage or input (a :class:`~retriever.errors.UserError`: a clear message,
no traceback), 1 failure (any other exception is a bug: its traceback is printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence

from retriever.errors import UserError, UserInputError, cause_type

from . import __version__
from .cli_args import add_hub_options, device, dtype, positive_int
from .cli_pipeline import register as register_pipeline_commands
from .cli_train import register as register_train_commands
from .config_template import register as register_config_commands
from .indexing.cli import register as register_index_commands
from .kb.cli import register as register_kb_commands
from .loading import DEFAULT_RETRIEVER, load_retriever
from .notes import TINY_RETRIEVER_NOTE

__all__ = ["main", "build_parser"]

logger = logging.getLogger("rag_vqa")

# what the user can fix: our UserError classes, and the user's paths that are missing, taken,
# of the wrong kind or not readable; anything else is a bug
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, PermissionError)


class UsageError(Exception):
    """A command line argparse refused; raised instead of exiting so --json can report it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}", self.format_usage())


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever", default="auto",
                        help=f"hub id or folder of a ReT checkpoint; 'tiny' for the untrained tiny "
                             f"model; 'auto' (default) uses {DEFAULT_RETRIEVER} when already "
                             "downloaded, else 'tiny'")
    parser.add_argument("--device", type=device, default=None,
                        help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--dtype", type=dtype, default=None,
                        help="float32 (default), bfloat16 or float16")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rag-vqa",
        description="Retrieval-augmented visual question answering with ReT.")
    parser.add_argument("--version", action="version", version=f"rag-vqa {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug and tracebacks)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    retriever = commands.add_parser("retriever", help="the ReT retriever on its own")
    retriever_cmds = retriever.add_subparsers(dest="action", metavar="ACTION", required=True)

    demo = retriever_cmds.add_parser(
        "demo", help="encode a built-in sample (flags with passages) and rank it for "
                     "image+question queries, with timings")
    _add_model_options(demo)
    demo.add_argument("-k", type=positive_int, default=3,
                      help="results shown per query (default 3)")
    demo.add_argument("--batch-size", type=positive_int, default=8)
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    demo.set_defaults(handler=_cmd_retriever_demo)

    info = retriever_cmds.add_parser("info", help="describe a ReT checkpoint (config only)")
    info.add_argument("checkpoint", help="hub id or folder")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(handler=_cmd_retriever_info)

    push = retriever_cmds.add_parser(
        "push", help="upload a trained retriever folder to the hub, with a model card",
        description="Upload a retriever folder (e.g. OUTPUT/model of `rag-vqa train`) as a model "
                    "repository, with a model card from its config and training record.")
    push.add_argument("folder", help="retriever folder (config.json + weights)")
    push.add_argument("repo_id", help="hub repository, owner/name")
    add_hub_options(push, "model", push=True)
    push.set_defaults(handler=_cmd_retriever_push)

    register_pipeline_commands(commands)
    register_kb_commands(commands)
    register_index_commands(commands)
    register_train_commands(commands)
    register_config_commands(commands)
    from eval.cli import register as register_eval_commands  # the CLI is a face over eval too

    register_eval_commands(commands)
    return parser


def _cmd_retriever_demo(args: argparse.Namespace) -> int:
    from .retriever_demo import run_retriever_demo

    if args.k < 1:
        raise UserInputError("-k must be at least 1")
    loaded = load_retriever(args.retriever, args.device, args.dtype)
    report = run_retriever_demo(loaded, k=args.k, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    if report.note:
        print(f"NOTE: {report.note}\n")
    print(f"retriever: {report.retriever}   documents: {report.num_documents}   "
          f"features per item: {report.feature_shape[0]}x{report.feature_shape[1]}")
    for query in report.queries:
        mark = "ok " if query.hit_at_1 else "   "
        print(f"\n{mark}[{query.label}] {query.question}")
        for rank, doc in enumerate(query.ranking, 1):
            star = "*" if doc.doc_id == query.expected_id else " "
            print(f"   {rank}. {star}{doc.title:<12} score {doc.score:8.3f}")
    s = report.seconds
    n = report.num_documents
    print(f"\nhit@1: {report.accuracy_at_1:.2f}   documents: {s['encode_documents']:.2f}s "
          f"({n / max(s['encode_documents'], 1e-9):.1f}/s)   queries: {s['encode_queries']:.2f}s   "
          f"search: {s['search'] * 1000:.1f} ms")
    if report.is_tiny:
        print(f"({TINY_RETRIEVER_NOTE})")
    return 0


def _cmd_retriever_info(args: argparse.Namespace) -> int:
    from retriever import ReTRetriever
    from retriever.checkpoint import resolve_pretrained_dir

    folder = resolve_pretrained_dir(args.checkpoint, config_only=True)
    config = ReTRetriever.load_config(folder)
    towers = {}
    for name, cfg in (("query", config.query_config), ("passage", config.passage_config)):
        towers[name] = {
            "layer_strategy": cfg.layer_strategy, "steps": cfg.num_steps,
            "hidden_size": cfg.hidden_size, "num_queries": cfg.num_queries,
            "output_dim": cfg.output_dim, "use_tanh": cfg.use_tanh,
            "text_backbone": cfg.text_config.name_or_path,
            "vision_backbone": cfg.vision_config.name_or_path,
            "image_size": getattr(cfg.vision_config, "image_size", None),
        }
    info = {"checkpoint": args.checkpoint, "folder": str(folder), "towers": towers,
            "share_text_models": config.share_text_models,
            "share_vision_models": config.share_vision_models,
            "share_query_passage_models": config.share_query_passage_models}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{args.checkpoint}  ({folder})")
        for name, tower in towers.items():
            print(f"  {name:8s} " + ", ".join(f"{k}={v}" for k, v in tower.items()))
        print(f"  shared backbones: text={config.share_text_models} "
              f"vision={config.share_vision_models}")
    return 0


def _cmd_retriever_push(args: argparse.Namespace) -> int:
    from retriever import ReTRetriever
    from retriever.sharing import push_retriever

    ReTRetriever.load_config(args.folder)  # a ReT checkpoint, or a clear error now
    where = push_retriever(args.folder, args.repo_id, hub_dir=args.hub_dir,
                           private=args.private, token=args.token)
    if args.json:
        print(json.dumps({"folder": args.folder, "repo_id": args.repo_id, "pushed_to": where}))
    else:
        print(f"pushed {args.folder} to {args.repo_id}: {where}")
    return 0


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error() if verbosity < 2 else hf_logging.set_verbosity_info()


EXIT_CODES = {"usage": 2, "input": 2, "failure": 1, "interrupted": 130}


def _report_error(message: str, kind: str, exc: BaseException | None, as_json: bool) -> int:
    """One error, as text on stderr or (under --json) as one JSON object on stdout."""
    if as_json:
        print(json.dumps({"error": message, "kind": kind,
                          "type": cause_type(exc) if exc is not None else None,
                          "exit_code": EXIT_CODES[kind]}, ensure_ascii=False))
    else:
        print(message if kind == "usage" else
              f"rag-vqa: {'error' if kind == 'input' else 'failed'}: {message}"
              if kind != "interrupted" else "rag-vqa: interrupted", file=sys.stderr)
    return EXIT_CODES[kind]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        message, usage = exc.args
        if not as_json:
            print(usage, end="", file=sys.stderr)
        return _report_error(message, "usage", exc, as_json)
    as_json = bool(getattr(args, "json", False))
    _configure_logging(args.verbose)
    try:
        return args.handler(args)
    except KeyboardInterrupt as exc:
        return _report_error("interrupted", "interrupted", exc, as_json)
    except Exception as exc:  # noqa: BLE001 - isinstance also sees registered UserErrors
        if isinstance(exc, USER_ERRORS):
            if args.verbose >= 2:
                logger.exception("failed")
            return _report_error(str(exc), "input", exc, as_json)
        traceback.print_exc(file=sys.stderr)  # a bug: its traceback, for the report
        return _report_error(f"{type(exc).__name__}: {exc}", "failure", exc, as_json)


if __name__ == "__main__":
    sys.exit(main())
