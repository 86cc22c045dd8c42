"""``rag-vqa eval score infoseek|evqa``: score a predictions file with the official benchmark
rules (see eval/metrics) and print a table or one JSON object.

Wire it from the ``eval`` command group with ``register(eval_subparsers)``; each leaf parser sets
``handler`` (returns 0; what it refuses in the user's files is a UserError: exit 2).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .metrics.bem import DEFAULT_BEM_MODEL, BEMLoadError
from .metrics.common import Coverage, MetricsInputError, MissingPredictionsError, load_predictions

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(eval_subparsers: Any) -> argparse.ArgumentParser:
    """Add ``score`` (with ``infoseek`` and ``evqa``) to the ``eval`` sub-command group."""
    # here, not at the top: importing rag_vqa or retriever loads torch, and this module must not
    from rag_vqa.cli_args import device, positive_int
    from retriever.errors import UserError

    # eval.metrics stays free of our packages (no torch on import): its errors are user errors
    for kind in (BEMLoadError, MetricsInputError, MissingPredictionsError):
        UserError.register(kind)

    score = eval_subparsers.add_parser(
        "score", help="score a predictions file with the official InfoSeek / E-VQA rules",
        description="Score predictions (JSONL with data_id and prediction) exactly as the "
                    "benchmarks' official scorers do, with a coverage check they lack.")
    benchmarks = score.add_subparsers(dest="score_benchmark", metavar="BENCHMARK",
                                      required=True)

    infoseek = benchmarks.add_parser(
        "infoseek", help="InfoSeek (official scorer: split scores and their harmonic mean)")
    infoseek.add_argument("--predictions", required=True, help="predictions JSONL")
    infoseek.add_argument("--references", required=True, help="infoseek_val.jsonl")
    infoseek.add_argument("--qtypes", required=True, help="infoseek_val_qtype.jsonl")
    _add_common(infoseek)
    infoseek.set_defaults(handler=_user_files(_cmd_score_infoseek))

    evqa = benchmarks.add_parser(
        "evqa", help="Encyclopedic-VQA (official EM, optionally with the BEM fallback)")
    evqa.add_argument("--predictions", required=True,
                      help="predictions JSONL; data_id is the 0-based row of the CSV")
    evqa.add_argument("--references", required=True, help="test.csv or val.csv")
    bem = evqa.add_mutually_exclusive_group()
    bem.add_argument("--no-bem", dest="bem", action="store_const", const=None,
                     help="exact match only (the default)")
    bem.add_argument("--bem", dest="bem", nargs="?", const=DEFAULT_BEM_MODEL, default=None,
                     metavar="MODEL",
                     help="fall back to BEM answer equivalence when exact match fails, as the "
                          f"official score does; MODEL is a hub id or folder (default "
                          f"{DEFAULT_BEM_MODEL})")
    evqa.add_argument("--bem-device", type=device, default=None,
                      help="device for BEM: cpu (default), cuda, cuda:N or auto")
    evqa.add_argument("--bem-batch-size", type=positive_int, default=32, help="BEM batch size")
    _add_common(evqa)
    evqa.set_defaults(handler=_user_files(_cmd_score_evqa))
    return score


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-missing", action="store_true",
                        help="score even if some reference questions have no prediction "
                             "(default: refuse, naming how many are missing)")
    parser.add_argument("--details", metavar="OUT.jsonl",
                        help="write one JSON line per scored question")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _check_details(path: str | None) -> None:
    """Refuse a --details path that cannot be written before anything is scored."""
    if path is None:
        return
    from retriever.errors import UserInputError
    from retriever.fileio import path_kind

    out = Path(path)
    if path_kind(out.parent) != "a folder":
        raise FileNotFoundError(f"folder {out.parent} does not exist (for --details {path})")
    kind = path_kind(out)
    if kind not in ("missing", "file"):
        raise UserInputError(f"--details {path} is {kind}, not a file")


def _write_details(path: str, rows: Iterable[dict[str, Any]]) -> None:
    from retriever.fileio import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _coverage_lines(cov: Coverage) -> list[str]:
    lines = [f"coverage: {cov.references - cov.missing}/{cov.references} reference questions "
             f"predicted; {cov.scored} predictions scored of {cov.predictions} read"]
    if cov.missing:
        split = ", ".join(f"{k}: {v}" for k, v in cov.missing_by_split.items() if v)
        lines.append(f"  MISSING {cov.missing} ({split}); e.g. {', '.join(cov.missing_ids[:5])}"
                     " - scored without them (--allow-missing)")
    if cov.num_duplicate_ids:
        lines.append(f"  {cov.num_duplicate_ids} duplicated data_id(s), each copy scored as the "
                     f"official scorer does: {', '.join(cov.duplicate_ids[:5])}")
    if cov.num_unknown_ids:
        lines.append(f"  {cov.num_unknown_ids} unknown data_id(s) ignored: "
                     f"{', '.join(cov.unknown_ids[:5])}")
    return lines


def _user_files(handler: Callable[[argparse.Namespace], int]
                ) -> Callable[[argparse.Namespace], int]:
    """A scorer reads only the user's files, so what it refuses there with a plain ``ValueError``
    (an empty reference answer, an unknown question type) is a :class:`UserError`; its own error
    classes are registered as user errors by :func:`register`."""
    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from retriever.errors import UserError

        try:
            return handler(args)
        except ValueError as exc:
            if type(exc) is ValueError:
                raise UserError(str(exc)) from exc
            raise

    return run


def _cmd_score_infoseek(args: argparse.Namespace) -> int:
    from .metrics.infoseek import load_infoseek_references, score_infoseek

    _check_details(args.details)
    references = load_infoseek_references(args.references, args.qtypes)
    predictions = load_predictions(args.predictions)
    result = score_infoseek(predictions, references, allow_missing=args.allow_missing)
    if args.details:
        _write_details(args.details, (d.to_dict() for d in result.details))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print("InfoSeek (official scorer rules)")
    print(f"  final score (harmonic mean of split scores): {result.final_score:6.2f}")
    print(f"  overall accuracy (all questions):            {result.overall_accuracy:6.2f}")
    print()
    print(f"  {'split':<17}{'score':>7}{'time':>8}{'numerical':>11}{'string':>8}"
          f"{'questions (time/num/string)':>32}")
    for name, split in (("unseen question", result.unseen_question),
                        ("unseen entity", result.unseen_entity)):
        counts = f"{split.count} ({split.count_time}/{split.count_num}/{split.count_string})"
        print(f"  {name:<17}{split.score:7.2f}{split.score_time:8.2f}{split.score_num:11.2f}"
              f"{split.score_string:8.2f}{counts:>32}")
    print()
    print("\n".join(_coverage_lines(result.coverage)))
    return 0


def _cmd_score_evqa(args: argparse.Namespace) -> int:
    from .metrics.evqa import load_evqa_references, score_evqa

    _check_details(args.details)
    references = load_evqa_references(args.references)
    predictions = load_predictions(args.predictions)
    bem = None
    if args.bem:
        from .metrics.bem import BEMScorer

        bem = BEMScorer(args.bem, device=args.bem_device, batch_size=args.bem_batch_size)
    result = score_evqa(predictions, references, bem=bem, allow_missing=args.allow_missing)
    if args.details:
        _write_details(args.details, (d.to_dict() for d in result.details))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    method = "EM only" if bem is None else result.method
    print(f"Encyclopedic-VQA (official evaluation rules) - method: {method}")
    print(f"  single-hop accuracy (question_type != 2_hop): {result.single_hop.accuracy:7.2f}"
          f"   ({result.single_hop.count} questions)")
    print(f"  accuracy (all questions):                     {result.all.accuracy:7.2f}"
          f"   ({result.all.count} questions)")
    print()
    print(f"  {'question type':<16}{'accuracy':>9}{'questions':>11}")
    for name, acc in result.per_type.items():
        value = f"{acc.accuracy:9.2f}" if acc.count else f"{'-':>9}"
        print(f"  {name:<16}{value}{acc.count:11d}")
    print()
    print("\n".join(_coverage_lines(result.coverage)))
    return 0
