"""Issue 15's part of report.md: the index's ranking beside the reranked one (Recall@K, PR@K and
entity recall at the cut-offs both reach), abstentions, and the risk-coverage table."""

from __future__ import annotations

from typing import Any

from .report_md import METRICS, cell

__all__ = ["rerank_lines"]


def _stages(first: dict[str, Any], final: dict[str, Any], kept: dict[str, Any]) -> list[str]:
    """``final``: the reranker's whole ranking; ``kept``: its top k (the generator's)."""
    ks = [k for k in final["ks"] if k in first["ks"]]
    lines = ["## Reranking: first stage against reranked (%)", "",
             (f"The index returned up to {first['depth']} candidates, the reranker's ranking "
              f"holds up to {final['depth']} of them and its top {kept['depth']} are the "
              "passages the generator is given."), "",
             "| metric | stage | " + " | ".join(f"@{k}" for k in ks) + " |",
             "|---|---|" + "---:|" * len(ks)]
    for name in METRICS:
        for label, section in (("first stage", first), ("reranked", final)):
            if section.get(name):
                lines.append(f"| {name} | {label} | " + " | ".join(
                    cell(section[name][f"@{k}"]) for k in ks) + " |")
    return lines + [""]


def _selective(selective: dict[str, Any], abstained: int) -> list[str]:
    lines = ["## Selective answering", ""]
    if abstained:
        lines += [(f"{abstained} questions abstained (answered the abstain text, scored wrong "
                   "by the official scorers); the table is over the answered ones."), ""]
    lines += [(f"Risk-coverage over {selective['questions']} answers, AURC "
               f"{selective['aurc']:.4f} (lower is better); see selective.png."), "",
              "| target coverage (%) | coverage (%) | confidence >= | answered | "
              "selective accuracy (%) |", "|---:|---:|---:|---:|---:|"]
    for row in selective["table"]:  # few questions: several targets share one threshold
        lines.append(f"| {100 * row['target_coverage']:.0f} | {100 * row['coverage']:.1f} | "
                     f"{row['threshold']:.4f} | "
                     f"{row['answered']} | {100 * row['accuracy']:.1f} |")
    return lines + [""]


def rerank_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    first, kept = report.get("retrieval_first_stage"), report.get("retrieval")
    if first and kept:  # runs of older versions recorded no reranked list: their top k
        lines += _stages(first, report.get("retrieval_reranked") or kept, kept)
    abstained = (report.get("coverage") or {}).get("abstained", 0)
    if report.get("selective"):
        lines += _selective(report["selective"], abstained)
    elif abstained:
        lines += ["## Selective answering", "",
                  f"All {abstained} answered questions abstained.", ""]
    return lines
