"""``rag-vqa eval calibrate RUN``: fit the answer-confidence calibration on a labelled run and
print its risk-coverage table; the file it writes is what ``[confidence] calibration`` points
to."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag_vqa.confidence import FEATURES
from retriever.errors import UserInputError

__all__ = ["register"]


def _features(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",")]
    unknown = [n for n in names if n not in FEATURES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"--features must be comma-separated names from "
                                         f"{', '.join(FEATURES)}, got {text!r}")
    return names


def register(actions: argparse._SubParsersAction) -> None:
    calibrate = actions.add_parser(
        "calibrate", help="fit the confidence calibration on a labelled run",
        description="Fits P(right) = sigmoid(a . features + b) on the scored answers of RUN "
                    "(Platt scaling), writes it as JSON and prints the risk-coverage table.")
    calibrate.add_argument("run_dir", metavar="RUN", help="an evaluated run folder")
    calibrate.add_argument("--out", help="calibration file (default RUN/calibration.json)")
    calibrate.add_argument("--features", type=_features, default=["margin"],
                           help="comma-separated: margin, top_score, rerank_probability, "
                                "rerank_margin (default margin)")
    calibrate.add_argument("--plot", help="also draw the risk-coverage curve (PNG) here")
    calibrate.add_argument("--json", action="store_true")
    calibrate.set_defaults(handler=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate_run, run_selective
    from .compare import CompareError, load_run

    try:
        if not Path(args.run_dir).is_dir():
            raise UserInputError(f"run folder {args.run_dir} does not exist")
        calibration, path = calibrate_run(args.run_dir, args.features, args.out)
        rows = list(load_run(args.run_dir).rows.values())
        summary = run_selective(rows, calibration, Path(args.plot) if args.plot else None)
    except (ValueError, CompareError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"calibration": str(path), "fit": vars(calibration),
                          "selective": summary}, indent=2, default=str))
        return 0
    terms = " + ".join(f"{w:.4g}*{f}" for w, f in zip(calibration.weights,
                                                    calibration.features))
    print(f"calibration: {path}\n  P(right) = sigmoid({calibration.bias:.4g} + {terms}) "
          f"over {calibration.examples} answers (accuracy {100 * calibration.accuracy:.1f}%)")
    print(f"  AURC {summary['aurc']:.4f}\n  coverage  threshold  answered  accuracy")
    for row in summary["table"]:
        print(f"  {100 * row['coverage']:7.1f}%  {row['threshold']:9.4f}  {row['answered']:8d}  "
              f"{100 * row['accuracy']:7.1f}%")
    return 0
