"""``rag-vqa eval compare`` (runs side by side, with confidence intervals and a paired test),
``eval export`` (a run's rankings as TREC / ColBERT TSV / JSONL) and ``eval table`` (M2KR runs
in one table shaped like the ReT README's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag_vqa.cli_args import non_negative_int, positive_int
from retriever.errors import UserInputError

from .rankings import FORMATS

__all__ = ["register"]


def _labels(text: str) -> list[str]:
    labels = [x.strip() for x in text.split(",")]
    if not all(labels):
        raise argparse.ArgumentTypeError(f"--labels must be comma-separated names, got {text!r}")
    return labels


def register(actions: argparse._SubParsersAction) -> None:
    compare = actions.add_parser(
        "compare", help="compare runs on their shared questions (deltas, CIs, McNemar)",
        description="The first run is the baseline: for every metric, each other run's "
                    "difference with a paired bootstrap 95%% interval and the exact McNemar "
                    "p-value, per split and per question type, and the questions that flipped.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders (eval run --out)")
    compare.add_argument("--labels", type=_labels, help="names of the runs, comma-separated "
                                                        "(default: the folder names)")
    compare.add_argument("--out", help="also write compare.json, compare.md and the plots here")
    compare.add_argument("--bootstrap", type=positive_int, default=10_000,
                         help="bootstrap samples (default 10000)")
    compare.add_argument("--seed", type=non_negative_int, default=0)
    compare.add_argument("--flips", type=non_negative_int, default=20,
                         help="flipped questions listed each way (default 20)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.set_defaults(handler=_cmd_compare)

    export = actions.add_parser("export", help="write a run's rankings as a TREC run file, a "
                                               "ColBERT-style TSV or JSONL")
    export.add_argument("run_dir")
    export.add_argument("--format", choices=FORMATS, required=True)
    export.add_argument("--out", required=True, help="file to write")
    export.add_argument("--tag", default="rag-vqa", help="TREC run tag (last column)")
    export.set_defaults(handler=_cmd_export)

    table = actions.add_parser("table", help="M2KR runs in one table (R@K / PR@K per "
                                             "benchmark, ReT README layout)")
    table.add_argument("runs", nargs="+", metavar="RUN")
    table.add_argument("--labels", type=_labels)
    table.add_argument("--json", action="store_true")
    table.set_defaults(handler=_cmd_table)


def _named(runs: list[str], labels: list[str] | None) -> list[tuple[str, str | None]]:
    if labels is not None and len(labels) != len(runs):
        raise UserInputError(f"--labels names {len(labels)} runs, but {len(runs)} were given")
    return list(zip(runs, labels or [None] * len(runs)))


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_markdown, compare_runs, load_run, write_comparison

    runs = [load_run(folder, label) for folder, label in _named(args.runs, args.labels)]
    result = compare_runs(runs, samples=args.bootstrap, seed=args.seed, flips=args.flips)
    if args.out:
        result["written"] = write_comparison(runs, result, Path(args.out))
    print(json.dumps(result, indent=2, default=str) if args.json else compare_markdown(result))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .rankings import run_rankings, write_rankings
    from .runner import PREDICTIONS, RUN_FILE, latest_records, read_predictions

    folder = Path(args.run_dir)
    if not (folder / RUN_FILE).is_file():
        raise UserInputError(f"{folder} is not an evaluation run folder (no {RUN_FILE})")
    records = latest_records(read_predictions(folder / PREDICTIONS, repair=False)).values()
    rankings = run_rankings(records)
    write_rankings(rankings, args.out, args.format, args.tag)
    print(f"{len(rankings)} rankings -> {args.out} ({args.format})")
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from .compare import load_run
    from .m2kr import m2kr_table, table_markdown

    named = _named(args.runs, args.labels)
    runs = [load_run(folder) for folder, _ in named]
    table = m2kr_table([(label, run.report) for (_, label), run in zip(named, runs)])
    print(json.dumps(table, indent=2) if args.json else table_markdown(table), end="")
    return 0
