"""``rag-vqa eval compare RUN_A RUN_B [...]``: runs side by side on the questions they share.

Every per-question outcome the reports keep (``questions.jsonl``) is a 0/1: an answer right or
wrong, a retrieval metric hit or missed at K. For each metric and each run against the first
(the baseline), on the same questions:

- the difference in percentage points with a paired bootstrap 95% interval (questions resampled
  with their pairs intact; seeded, so the interval is the same on every call). With 0/1
  outcomes a question's paired difference is -1, 0 or +1, so a bootstrap sample's mean only
  depends on how many of each it draws: the draws are multinomial over those three counts,
  which is the bootstrap exactly, at any number of questions;
- the exact McNemar test (two-sided binomial test on the discordant pairs) as the p-value;
- the same per split and per question type, and the questions that flipped either way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retriever.errors import UserError
from retriever.fileio import path_kind, read_jsonl_records

from .report import QUESTIONS, write_report
from .report_md import METRICS, cell

__all__ = ["RunData", "load_run", "compare_runs", "compare_markdown", "mcnemar_p",
           "paired_bootstrap", "CompareError", "write_comparison"]

logger = logging.getLogger(__name__)

_SHORT = {"recall": "R", "pseudo_recall": "PR", "entity_recall": "ER"}


class CompareError(UserError, ValueError):
    """Runs that cannot be compared (no shared questions, a folder that is not a run)."""


@dataclass
class RunData:
    label: str
    folder: str
    report: dict[str, Any]
    rows: dict[str, dict[str, Any]]      # data_id -> questions.jsonl row


def load_run(folder: str | Path, label: str | None = None) -> RunData:
    """A run's report and per-question rows (the report is written first when missing)."""
    folder = Path(folder)
    if path_kind(folder / QUESTIONS) != "file" or path_kind(folder / "report.json") != "file":
        logger.info("%s has no report yet: writing it", folder)
        write_report(folder)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    rows = {}
    for number, row, error in read_jsonl_records(folder / QUESTIONS):
        if error is not None or not isinstance(row, dict) or "data_id" not in row:
            raise CompareError(f"{folder / QUESTIONS}:{number} is damaged; run "
                               f"'rag-vqa eval report {folder}' again")
        rows[row["data_id"]] = row
    return RunData(label or folder.name, str(folder), report, rows)


# -- statistics ----------------------------------------------------------------------------------

def mcnemar_p(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value of ``gained`` (0 -> 1) against ``lost`` (1 -> 0)
    discordant pairs: twice the binomial(n, 1/2) tail of the smaller count, at most 1."""
    n = gained + lost
    if n == 0:
        return 1.0
    low = min(gained, lost)
    log_half = n * math.log(0.5)
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                        + log_half) for i in range(low + 1))
    return min(1.0, 2.0 * tail)


def paired_bootstrap(a: Sequence[int], b: Sequence[int], samples: int = 10_000,
                     seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a) in percentage points, questions resampled in pairs
    (multinomial over the -1 / 0 / +1 paired differences: see the module docstring)."""
    diff = np.asarray(b, dtype=np.int64) - np.asarray(a, dtype=np.int64)
    n = len(diff)
    if n == 0:
        return (math.nan, math.nan)
    counts = np.array([(diff == -1).sum(), (diff == 0).sum(), (diff == 1).sum()])
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=samples)
    means = 100.0 * (draws[:, 2] - draws[:, 0]) / n
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# -- outcomes ------------------------------------------------------------------------------------

def _metric_names(runs: Sequence[RunData]) -> list[tuple[str, str, int | None]]:
    """(name, kind, K) of the outcomes every run has: accuracy, then each retrieval metric at
    the headline cut-offs all runs retrieved to (1, 5, 10 and the smallest depth)."""
    out: list[tuple[str, str, int | None]] = []
    if all(any(r.get("correct") is not None for r in run.rows.values()) for run in runs):
        out.append(("accuracy", "accuracy", None))
    ks = None
    for run in runs:
        run_ks = set(((run.report.get("retrieval") or {}).get("ks")) or [])
        ks = run_ks if ks is None else ks & run_ks
    if ks:
        chosen = sorted(k for k in ks if k in (1, 5, 10) or k == max(ks))
        for metric in METRICS:
            if all(any(metric in (r.get("ranks") or {}) for r in run.rows.values())
                   for run in runs):
                out += [(f"{_SHORT[metric]}@{k}", metric, k) for k in chosen]
    return out


def _outcome(row: Mapping[str, Any], kind: str, k: int | None) -> int | None:
    if kind == "accuracy":
        return None if row.get("correct") is None else int(row["correct"])
    ranks = row.get("ranks") or {}
    if kind not in ranks:
        return None
    return int(ranks[kind] is not None and ranks[kind] <= k)  # type: ignore[operator]


def _compare_on(runs: Sequence[RunData], ids: Sequence[str], metrics, samples: int,
                seed: int) -> dict[str, Any]:
    table = {}
    for name, kind, k in metrics:
        per_run = [[_outcome(run.rows[i], kind, k) for i in ids] for run in runs]
        usable = [j for j in range(len(ids)) if all(v[j] is not None for v in per_run)]
        if not usable:
            continue
        values = [[v[j] for j in usable] for v in per_run]
        entry: dict[str, Any] = {"count": len(usable), "values": {
            run.label: 100.0 * sum(v) / len(v) for run, v in zip(runs, values)}, "deltas": {}}
        for run, v in zip(runs[1:], values[1:]):
            gained = sum(1 for x, y in zip(values[0], v) if x == 0 and y == 1)
            lost = sum(1 for x, y in zip(values[0], v) if x == 1 and y == 0)
            low, high = paired_bootstrap(values[0], v, samples, seed)
            entry["deltas"][run.label] = {
                "delta": 100.0 * (sum(v) - sum(values[0])) / len(v), "ci95": [low, high],
                "p_mcnemar": mcnemar_p(gained, lost), "gained": gained, "lost": lost}
        table[name] = entry
    return table


def _flips(runs: Sequence[RunData], ids: Sequence[str], metric: tuple[str, str, int | None],
           limit: int) -> dict[str, Any]:
    name, kind, k = metric
    out = {}
    base = runs[0]
    for run in runs[1:]:
        gained, lost = [], []
        for i in ids:
            a, b = _outcome(base.rows[i], kind, k), _outcome(run.rows[i], kind, k)
            if a is None or b is None or a == b:
                continue
            item = {"data_id": i, "question": base.rows[i].get("question"),
                    "answers": base.rows[i].get("answers"),
                    "predictions": {base.label: base.rows[i].get("prediction"),
                                    run.label: run.rows[i].get("prediction")},
                    "ranks": {base.label: (base.rows[i].get("ranks") or {}).get(kind),
                              run.label: (run.rows[i].get("ranks") or {}).get(kind)}}
            (gained if b else lost).append(item)
        out[run.label] = {"metric": name, "gained_count": len(gained), "lost_count": len(lost),
                          "gained": gained[:limit], "lost": lost[:limit]}
    return out


def compare_runs(runs: Sequence[RunData], samples: int = 10_000, seed: int = 0,
                 flips: int = 20) -> dict[str, Any]:
    """The comparison of ``runs`` (the first is the baseline) on their shared questions."""
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs")
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise CompareError(f"two runs share a label ({', '.join(labels)}); pass --labels")
    shared = [i for i in runs[0].rows if all(i in r.rows for r in runs[1:])]
    common = set(shared)
    if not shared:
        raise CompareError("the runs share no question (data_id): they are not runs of the "
                           "same question set")
    metrics = _metric_names(runs)
    if not metrics:
        raise CompareError("the runs have no outcome in common to compare (answers scored "
                           "in all, or retrieval with gold data in all)")
    result: dict[str, Any] = {
        "units": "percent; deltas in percentage points against the first run",
        "baseline": labels[0], "seed": seed, "bootstrap_samples": samples,
        "test": "exact McNemar (two-sided) on discordant questions",
        "runs": [{"label": r.label, "folder": r.folder,
                  "dataset": (r.report.get("run") or {}).get("dataset"),
                  "models": r.report.get("models"), "questions": len(r.rows),
                  "only_here": sum(1 for i in r.rows if i not in common)} for r in runs],
        "shared_questions": len(shared),
        "overall": _compare_on(runs, shared, metrics, samples, seed)}
    for key, field in (("per_split", "split"), ("per_type", "type")):
        groups: dict[str, list[str]] = {}
        for i in shared:
            if runs[0].rows[i].get(field):
                groups.setdefault(str(runs[0].rows[i][field]), []).append(i)
        if len(groups) > 1 or (key == "per_split" and groups):
            result[key] = {g: _compare_on(runs, ids, metrics, samples, seed)
                           for g, ids in sorted(groups.items())}
    result["flipped"] = _flips(runs, shared, metrics[0], flips)
    return result


def _rows(table: Mapping[str, Any], labels: Sequence[str]) -> list[str]:
    lines = []
    for name, entry in table.items():
        values = " | ".join(cell(entry["values"][label]) for label in labels)
        deltas = " | ".join(
            f"{d['delta']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] p={d['p_mcnemar']:.3g}"
            for d in entry["deltas"].values())
        lines.append(f"| {name} | {entry['count']} | {values} | {deltas} |")
    return lines


def compare_markdown(result: Mapping[str, Any]) -> str:
    labels = [r["label"] for r in result["runs"]]
    others = labels[1:]
    header = ("| metric | questions | " + " | ".join(f"{x} %" for x in labels) + " | "
              + " | ".join(f"{x} - {labels[0]} (95% CI, McNemar p)" for x in others) + " |")
    rule = "|---|---:|" + "---:|" * len(labels) + "---|" * len(others)
    lines = [f"# Comparison against {labels[0]}", "",
             f"{result['shared_questions']} shared questions; percentages, deltas in points; "
             f"paired bootstrap ({result['bootstrap_samples']} samples, seed {result['seed']}) "
             f"and {result['test']}.", "", header, rule, *_rows(result["overall"], labels), ""]
    for key, title in (("per_split", "split"), ("per_type", "question type")):
        for group, table in (result.get(key) or {}).items():
            lines += [f"## {title}: {group}", "", header, rule, *_rows(table, labels), ""]
    for label, flips in result["flipped"].items():
        lines += [f"## Flipped ({flips['metric']}): {label} vs {labels[0]}", "",
                  f"{flips['gained_count']} gained, {flips['lost_count']} lost", ""]
        for kind in ("gained", "lost"):
            lines += [f"- {kind}: `{f['data_id']}` {f['question'] or ''} -> "
                      + "; ".join(f"{k}: {v!r}" for k, v in f["predictions"].items())
                      for f in flips[kind]]
        lines.append("")
    return "\n".join(lines)


def write_comparison(runs: Sequence[RunData], result: Mapping[str, Any], out: Path) -> list[str]:
    """compare.json, compare.md and the recall@K curves of every run on one axis into ``out``."""
    from retriever.fileio import atomic_write_text

    from .plots import grouped_bars, recall_curves

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.json", json.dumps(result, indent=2, default=str))
    atomic_write_text(out / "compare.md", compare_markdown(result))
    written = ["compare.json", "compare.md"]
    if recall_curves([(r.label, r.report.get("retrieval") or {}) for r in runs],
                     out / "compare_recall_at_k.png", "Retrieval @K by run") is not None:
        written.append("compare_recall_at_k.png")
    primary = next(iter(result["overall"]), None)
    splits = result.get("per_split") or {}
    if primary and splits:
        groups = {g: {label: (table[primary]["values"][label], table[primary]["count"])
                      for label in (r.label for r in runs)}
                  for g, table in splits.items() if primary in table}
        grouped_bars(groups, out / "compare_by_split.png", f"{primary} by split")
        written.append("compare_by_split.png")
    return written
