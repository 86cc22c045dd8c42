"""``rag-vqa eval``: ``score`` (official scorers), ``run`` (the pipeline over a dataset) and
``report`` (numbers, tables and plots of a run).

Exit codes as everywhere: 0 ok, 2 bad usage or input (refused before any work), 1 failure - for
``eval run`` that includes questions that failed (the report is written all the same)."""

from __future__ import annotations

import argparse
import json
import sys

from rag_vqa.cli_args import non_negative_int, positive_int
from rag_vqa.cli_pipeline import add_pipeline_options, pipeline_from_args
from rag_vqa.ray_runtime import add_ray_arguments, check_reachable, options_from_args

from .datasets import DATASETS
from .metrics.bem import DEFAULT_BEM_MODEL

__all__ = ["register"]


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--shard must look like 0/4, got {text!r}") from exc
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return index, count


def _model_id(text: str) -> str:
    if not text.strip() or any(ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"expected a model id or folder, got {text!r}")
    return text


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("eval", help="score predictions, run and report evaluations")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    from .score_cli import register as register_score

    register_score(actions)

    run = actions.add_parser(
        "run", help="run the pipeline over a dataset (resumable) and write a report",
        description="Retrieve (and answer) every question of a dataset, appending to "
                    "OUT/predictions.jsonl as it goes; a restart resumes where it stopped. "
                    "Exits 1 when questions failed (the report is still written).")
    run.add_argument("--dataset", choices=DATASETS, required=True)
    run.add_argument("--questions", required=True,
                     help="question file (JSONL, E-VQA CSV, M2KR parquet/JSONL)")
    run.add_argument("--images", required=True, help="image root")
    run.add_argument("--out", required=True, help="run folder")
    run.add_argument("--rankings", help="rank with this file (TREC run, ColBERT TSV or JSONL, "
                                        "e.g. PreFLMR's) instead of our retriever")
    run.add_argument("--retrieval-only", action="store_true", help="retrieve, do not answer")
    run.add_argument("--limit", type=non_negative_int,
                     help="only the first N questions (of this shard)")
    run.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: every n-th question "
                                                                   "from the i-th (0-based)")
    run.add_argument("--k", type=positive_int, help="passages per question (default: the "
                                                    "config's)")
    run.add_argument("--batch-size", type=positive_int, default=8)
    run.add_argument("--qtypes", help="InfoSeek question-type file (infoseek_val_qtype.jsonl)")
    run.add_argument("--withkb", help="InfoSeek entity file (infoseek_val_withkb.jsonl)")
    run.add_argument("--image-map", help="JSON {image id: path relative to --images}")
    run.add_argument("--retry-failed", action="store_true",
                     help="run the questions whose last record failed again")
    run.add_argument("--skip-bad", action="store_true",
                     help="leave out question records that cannot be identified (not JSON, no "
                          "usable data_id) instead of refusing the file; they are counted")
    run.add_argument("--bem", nargs="?", const=DEFAULT_BEM_MODEL, type=_model_id,
                     help="E-VQA: also score with BEM in the report (model id)")
    run.add_argument("--json", action="store_true", help="print the report summary as JSON")
    add_pipeline_options(run)  # --config --profile --index --retriever --nprobe ... as `ask`
    add_ray_arguments(run)
    run.set_defaults(handler=_cmd_run)

    report = actions.add_parser("report", help="(re)write report.json, report.md and plots")
    report.add_argument("run_dir")
    report.add_argument("--bem", nargs="?", const=DEFAULT_BEM_MODEL, type=_model_id,
                        help="E-VQA: also score with BEM (model id)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=_cmd_report)
    from .compare_cli import register as register_compare

    register_compare(actions)
    from .calibrate_cli import register as register_calibrate  # issue 15

    register_calibrate(actions)


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report["summary"], indent=2))
        return
    from .report import summary_lines

    print("\n".join(summary_lines(report)))


def _cmd_run(args: argparse.Namespace) -> int:
    from .report import write_report
    from .runner import RunSpec, run_eval

    ray = options_from_args(args)
    if ray is not None:
        check_reachable(ray)  # in seconds, before anything loads
    pipeline, note = pipeline_from_args(args)
    if note:
        print(f"NOTE: {note}", file=sys.stderr)
    spec = RunSpec(dataset=args.dataset, questions=args.questions, images=args.images,
                   out=args.out, index=args.index, config=args.config, rankings=args.rankings,
                   retrieval_only=args.retrieval_only, limit=args.limit, shard=args.shard,
                   k=args.k, batch_size=args.batch_size, qtypes=args.qtypes, withkb=args.withkb,
                   image_map=args.image_map, retry_failed=args.retry_failed,
                   skip_bad=args.skip_bad, verify=args.verify,
                   allow_retriever_mismatch=bool(args.allow_retriever_mismatch))
    summary = run_eval(spec, pipeline, ray=ray)
    if not args.json:
        retried = f", {summary.retried} retried" if summary.retried else ""
        skipped = f"; {summary.skipped_records} unusable records skipped" \
            if summary.skipped_records else ""
        print(f"{summary.selected} questions: {summary.already_done} already done, "
              f"{summary.answered} answered now, {summary.failed} failed{retried} "
              f"({summary.seconds:.1f}s) -> {summary.out}{skipped}")
    _print_report(write_report(args.out, bem=args.bem), args.json)
    if summary.complete:
        return 0
    reasons = "; ".join(f"{n} x {reason}" for reason, n in summary.failure_reasons)
    print(f"rag-vqa: {summary.failed_total} of {summary.selected} questions failed (most "
          f"common: {reasons}); see {summary.out}/report.md, fix the cause and run again with "
          "--retry-failed", file=sys.stderr)
    return 1


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    _print_report(write_report(args.run_dir, bem=args.bem), args.json)
    return 0
