"""``rag-vqa ask``, ``rag-vqa quickstart`` and ``rag-vqa demo``, plus the pipeline options they
share with the Gradio app."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from retriever.errors import UserError
from retriever.fileio import require_file
from retriever.index.params import check_search_params
from retriever.index.storage import VERIFY_LEVELS

from .cli_args import device, port, positive_int
from .config import PROFILES
from .notes import TINY_NOTE
from .pipeline import Answer, RagVQA
from .quickstart import (
    answer_is_right,
    choose_profile,
    default_cache,
    run_quickstart,
    sample_pipeline,
)

__all__ = ["register", "add_pipeline_options", "pipeline_from_args", "add_demo_options",
           "add_rerank_options"]


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline")
    group.add_argument("--config", help="TOML configuration file")
    group.add_argument("--profile", choices=["auto", *PROFILES], default=None,
                       help="model profile (default: the config's, else 'default'; with "
                            "--sample, 'auto'; 'auto' picks 'default' when its models are "
                            "downloaded, else the offline 'sample')")
    group.add_argument("--index", help="index folder (from `rag-vqa index build`)")
    group.add_argument("--kb", help="knowledge-base folder (default: the one the index records)")
    group.add_argument("--sample", action="store_true",
                       help="use the bundled sample knowledge base (indexed on first use)")
    group.add_argument("--retriever", help="retriever hub id or folder (overrides the profile)")
    group.add_argument("--generator", help="generator hub id or folder (overrides the profile)")
    group.add_argument("--device", type=device,
                       help="cpu, cuda, cuda:N or auto (both models)")
    group.add_argument("--max-new-tokens", type=positive_int, help="answer length limit")
    group.add_argument("--verify", choices=VERIFY_LEVELS, default=None,
                       help="how much of the index and knowledge base to check when they load: "
                            "full (default: every file's digest, ~0.5 s per 10 GB), size, or "
                            "none (only the manifests' seals; for huge indexes on trusted "
                            "storage)")
    group.add_argument("--allow-retriever-mismatch", action="store_true", default=None,
                       help="search an index built with other retriever weights (normally "
                            "refused: its vectors do not match the queries)")
    group.add_argument("--nprobe", type=positive_int, default=None,
                       help="search: centroids probed per query vector (index.search.nprobe)")
    group.add_argument("--ndocs", type=positive_int, default=None,
                       help="search: documents scored exactly per query (index.search.ndocs)")
    group.add_argument("--effort", type=_search_effort, default=None,
                       help="search: recall against speed (index.search.effort): 1 = the "
                            "index's adaptive defaults, 2 = more recall for ~2x the time, 0.5 "
                            "= faster")
    add_rerank_options(parser)


def add_rerank_options(parser: argparse.ArgumentParser) -> None:
    """Issue 15: one reranking stage from flags ([reranker] in a config for more), citing,
    abstaining."""
    from retriever.rerank import KINDS

    group = parser.add_argument_group("reranking and answering")
    group.add_argument("--rerank", metavar="MODEL", default=None,
                       help="rerank the retrieved passages with this model (hub id or folder)")
    group.add_argument("--rerank-kind", choices=list(KINDS), default=None,
                       help="what the reranker is (default cross-encoder); article needs no "
                            "model")
    group.add_argument("--rerank-top", type=positive_int, default=None, metavar="N",
                       help="candidates the reranker keeps (the best k of them are answered "
                            "from)")
    group.add_argument("--k-retrieve", type=positive_int, default=None, metavar="N",
                       help="candidates the index returns for reranking (default 50)")
    group.add_argument("--cite", action="store_true", default=None,
                       help="ask the generator to cite passages as [1], [2]")
    group.add_argument("--abstain-below", type=_probability, default=None, metavar="T",
                       help="answer answer.abstain_text (\"I don't know\") when the confidence "
                            "is under T (0-1; calibrate it with `rag-vqa eval calibrate`)")
    group.add_argument("--calibration", default=None, metavar="FILE",
                       help="confidence calibration file (from `rag-vqa eval calibrate`)")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _search_effort(text: str) -> float:
    try:
        return check_search_params({"effort": float(text)})["effort"]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.retriever:
        out.setdefault("retriever", {})["model"] = args.retriever
    if args.generator:
        out.setdefault("generator", {})["model"] = args.generator
    if args.device:
        out.setdefault("retriever", {})["device"] = args.device
        out.setdefault("generator", {})["device"] = args.device
    if args.max_new_tokens is not None:
        out.setdefault("generator", {})["max_new_tokens"] = args.max_new_tokens
    if getattr(args, "k", None) is not None:
        out["k"] = args.k
    if args.verify is not None:
        out.setdefault("index", {})["verify"] = args.verify
    if args.allow_retriever_mismatch:
        out.setdefault("index", {})["allow_retriever_mismatch"] = True
    for knob in ("nprobe", "ndocs", "effort"):
        if getattr(args, knob, None) is not None:
            out.setdefault("index", {}).setdefault("search", {})[knob] = getattr(args, knob)
    _rerank_overrides(args, out)
    return out


def _rerank_overrides(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Issue 15: --rerank* replace the configured stages; --cite, --abstain-below,
    --calibration set the [answer] table."""
    from .config import ConfigError
    from .reranking import stage_from_flags

    try:
        stage = stage_from_flags(getattr(args, "rerank", None),
                                 getattr(args, "rerank_kind", None),
                                 getattr(args, "rerank_top", None))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if stage is not None:
        out.setdefault("reranker", {})["stages"] = [stage]
    if getattr(args, "k_retrieve", None) is not None:
        out.setdefault("reranker", {})["k_retrieve"] = args.k_retrieve
    for flag, key in (("cite", "cite"), ("abstain_below", "abstain_below"),
                      ("calibration", "calibration")):
        if getattr(args, flag, None) is not None:
            out.setdefault("answer", {})[key] = getattr(args, flag)


def pipeline_from_args(args: argparse.Namespace) -> tuple[RagVQA, str]:
    """The pipeline the options describe and a note to show the user (or "")."""
    overrides = _overrides(args)
    requested = args.profile or ("auto" if args.sample else None)
    profile, note = choose_profile(requested) if requested else (None, "")
    if profile:
        overrides["profile"] = profile
    if args.sample:
        overrides.pop("profile", None)
        return sample_pipeline(profile, **overrides), note
    if args.index:
        overrides.setdefault("index", {})["path"] = args.index
    if args.kb:
        overrides.setdefault("index", {})["kb"] = args.kb
    return RagVQA.from_config(args.config, **overrides), note


def register(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("ask", help="answer a question about a photo, with evidence")
    ask.add_argument("image", help="image file")
    ask.add_argument("question")
    ask.add_argument("--k", type=positive_int, default=None,
                     help="passages to retrieve (default 5)")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    add_pipeline_options(ask)
    ask.set_defaults(handler=_cmd_ask)

    quick = commands.add_parser(
        "quickstart", help="index the bundled sample knowledge base and answer its questions")
    quick.add_argument("--profile", choices=["auto", *PROFILES], default="auto")
    quick.add_argument("--cache", type=Path, default=None,
                       help=f"work folder (default {default_cache()})")
    quick.add_argument("--json", action="store_true")
    quick.set_defaults(handler=_cmd_quickstart)

    demo = commands.add_parser("demo", help="start the Gradio demo (python app.py)")
    add_pipeline_options(demo)
    add_demo_options(demo)
    demo.set_defaults(handler=_cmd_demo)


def _print_answer(answer: Answer) -> None:
    if answer.note:
        print(f"NOTE: {answer.note}")
    if answer.error:
        print(f"answer: (failed: {answer.error})")
    else:
        print(f"answer: {answer.answer}" + ("  (abstained)" if answer.abstained else ""))
    if answer.confidence is not None:
        print(f"confidence: {answer.confidence:.3f}")
    print("evidence:" + ("  (* cited)" if answer.citations else ""))
    for ev in answer.evidence:
        title = f"{ev.title} - " if ev.title else ""
        text = ev.text if len(ev.text) <= 100 else ev.text[:97] + "..."
        mark = "*" if ev.passage_id in answer.citations else " "
        first = f"  (first stage #{ev.first_stage_rank})" if ev.first_stage_rank else ""
        print(f" {mark}[{ev.rank}] {ev.score:8.3f}  {ev.passage_id}  {title}{text}{first}")
    t = answer.timings
    print(f"time: retrieval {1000 * (t['encode_query'] + t['search'] + t['fetch']):.0f} ms, "
          f"generation {1000 * t['generate']:.0f} ms")


def _cmd_ask(args: argparse.Namespace) -> int:
    try:
        require_file(args.image, "image")  # before any model loads
    except ValueError as exc:  # the user's path is a folder, a FIFO, a device
        raise UserError(str(exc)) from exc
    pipe, note = pipeline_from_args(args)
    if note:
        print(f"NOTE: {note}", file=sys.stderr)
    answer = pipe.answer(args.image, args.question, k=args.k)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_answer(answer)
    return 0 if answer.error is None else 1


def _cmd_quickstart(args: argparse.Namespace) -> int:
    result = run_quickstart(args.profile, args.cache)
    total = len(result.answers)
    if args.json:
        print(json.dumps({"profile": result.profile, "reason": result.reason,
                          "note": result.note, "kb": result.kb, "index": result.index,
                          "retrieval_hits": result.retrieval_hits,
                          "answer_hits": result.answer_hits,
                          "answers": [{"question": q.question, "expected": q.answer,
                                       "expected_passages": q.passage_id,
                                       "correct": answer_is_right(a.answer, q.answer),
                                       **a.to_dict()} for q, a in result.answers]},
                         indent=2, ensure_ascii=False))
        return 0
    if result.reason:
        print(f"NOTE: {result.reason}")
    print(f"answered by: {result.note or result.profile + ' profile'}")
    print(f"knowledge base: {result.kb}\nindex: {result.index}\n")
    for question, answer in result.answers:
        mark = "right" if answer_is_right(answer.answer, question.answer) else "wrong"
        print(f"Q: {question.question}   (photo of a flag; expected: {question.answer[0]})")
        print(f"A: {answer.answer if answer.error is None else 'failed: ' + answer.error}"
              f"   ({mark})")
        for ev in answer.evidence:
            used = "*" if ev.passage_id in answer.used_passages else " "
            print(f"  {used}[{ev.rank}] {ev.score:7.3f}  {ev.title}: {ev.text[:70]}")
        print()
    print(f"profile {result.profile}: the top passage was the expected one for "
          f"{result.retrieval_hits}/{total} questions, {result.answer_hits}/{total} answers "
          "right (E-VQA exact match); * marks the passages the prompt held")
    if result.profile == "tiny":
        print(f"({TINY_NOTE})")
    return 0


def add_demo_options(parser: argparse.ArgumentParser) -> None:
    """The demo's own options, shared by ``rag-vqa demo`` and ``python app.py``."""
    group = parser.add_argument_group("demo")
    group.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    group.add_argument("--port", type=port, default=7860, help="TCP port (default 7860)")
    group.add_argument("--concurrency", type=positive_int, default=1, metavar="N",
                       help="questions answered at the same time (default 1: every visitor "
                            "shares one copy of the models; raise it only with memory to spare)")
    group.add_argument("--max-queue", type=positive_int, default=32, metavar="N",
                       help="questions that may wait (default 32); beyond that a visitor is "
                            "told the demo is busy and to try again")


def _cmd_demo(args: argparse.Namespace) -> int:
    """Become ``python -m app`` (app.py is a face over this package, never imported by it).

    The process is replaced, not given a child: SIGTERM and SIGINT reach the server itself, so
    stopping ``rag-vqa demo`` stops the demo."""
    options = argparse.ArgumentParser(add_help=False)
    add_pipeline_options(options)
    add_demo_options(options)
    argv: list[str] = []
    for action in options._actions:  # every option both parsers share, forwarded as given
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value is False:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if value is True else [flag, str(value)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "app", *argv])  # returns only by raising
