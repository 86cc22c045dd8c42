"""``report.md``: the tables of a run's report (:mod:`eval.report`), every score a percentage
and a category without questions "n/a"."""

from __future__ import annotations

from typing import Any

__all__ = ["METRICS", "markdown", "cell"]

METRICS = ("recall", "pseudo_recall", "entity_recall")


def cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


_SHORT = {"recall": "R", "pseudo_recall": "PR", "entity_recall": "ER"}


def _retrieval_lines(retrieval: dict[str, Any]) -> list[str]:
    ks = retrieval["ks"]
    lines = [f"## Retrieval (%, top {retrieval['depth']} retrieved)", "",
             "| metric | questions | " + " | ".join(f"@{k}" for k in ks) + " |",
             "|---|---:|" + "---:|" * len(ks)]
    for name in METRICS:
        if retrieval.get(name):
            count = retrieval["counts"].get(name, retrieval["count"])
            lines.append(f"| {name} | {count} | " + " | ".join(
                cell(retrieval[name][f"@{k}"]) for k in ks) + " |")
    for key, title in (("per_split", "split"), ("per_type", "question type")):
        groups = retrieval.get(key) or {}
        if not groups or (key == "per_type" and len(groups) < 2):
            continue
        cols = [(m, k) for m in METRICS if retrieval.get(m) for k in ks
                if k in (1, 5, 10) or k == ks[-1]]
        lines += ["", f"Per {title} (%):", "",
                  f"| {title} | questions | " + " | ".join(f"{_SHORT[m]}@{k}" for m, k in cols)
                  + " |", "|---|---:|" + "---:|" * len(cols)]
        for name, values in groups.items():
            lines.append(f"| {name} | {values.get('count', 0)} | " + " | ".join(
                cell((values.get(m) or {}).get(f"@{k}")) for m, k in cols) + " |")
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    cov = report["coverage"]
    lines = [f"# Evaluation: {report['run']['dataset']}", "",
             f"Retriever `{report['models']['retriever']}`, generator "
             f"`{report['models']['generator']}`; {cov['done']} of {cov['selected']} questions "
             f"done, {cov['failed']} failed"
             + (f"; {cov['skipped_records']} unusable question records left out (--skip-bad)"
                if cov.get("skipped_records") else "")
             + ". Scores are percentages; n/a: no question in that category.", ""]
    if report.get("retrieval"):
        lines += _retrieval_lines(report["retrieval"])
    from .report_rerank import rerank_lines  # issue 15: both stages, selective answering

    lines += rerank_lines(report)
    qa = report.get("qa") or {}
    if "infoseek" in qa:
        s = qa["infoseek"]
        lines += ["## InfoSeek (official rules, %)", "",
                  f"- final score (harmonic mean of split scores): **{s['final_score']:.2f}**",
                  f"- overall accuracy (all questions): {s['overall_accuracy']:.2f}", "",
                  "| split | score | time | numerical | string | questions |",
                  "|---|---:|---:|---:|---:|---:|"]
        for split in ("unseen_question", "unseen_entity"):
            r = s[split]
            lines.append(f"| {split} | {cell(r['score'])} | {cell(r['score_time'])} | "
                         f"{cell(r['score_num'])} | {cell(r['score_string'])} | "
                         f"{r['count']} |")
        lines.append("")
    if "evqa" in qa:
        s = qa["evqa"]
        lines += [f"## Encyclopedic-VQA ({s['method']}, %)", "", "| subset | accuracy | "
                  "questions |", "|---|---:|---:|",
                  f"| single-hop | {cell(s['single_hop']['accuracy'])} | "
                  f"{s['single_hop']['count']} |",
                  f"| all | {cell(s['all']['accuracy'])} | {s['all']['count']} |"]
        lines += [f"| {t} | {cell(v['accuracy'])} | {v['count']} |"
                  for t, v in s["per_type"].items()]
        lines.append("")
    if "exact_match" in qa:
        em = qa["exact_match"]
        lines += ["## Answers", "", f"- {em['method']}: {em['accuracy']:.2f}% "
                  f"({em['count']} questions)", ""]
    if report.get("timings"):
        lines += ["## Time per question (seconds)", "",
                  "latency: each question's wait for its answer (its batch's wall time, batch "
                  f"size {report['run'].get('batch_size')}); model stages: the batch's time "
                  "divided by its size.", "",
                  "| stage | mean | p50 | p95 | questions |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['mean']:.4f} | {v['p50']:.4f} | {v['p95']:.4f} | "
                  f"{v.get('count', '')} |" for k, v in report["timings"].items()]
        lines.append("")
    if report.get("failures"):
        lines += ["## Failures", ""] + [f"- {f['count']} x {f['reason']} (e.g. {f['example']})"
                                        for f in report["failures"]] + [""]
    return "\n".join(lines)
