"""Reports of an evaluation run: ``report.json`` (every number, the configuration, model ids,
versions, dataset checksums), ``report.md`` (tables) and PNG plots (recall@K curves, accuracy by
split and question type). Scores come from the official-rule scorers in ``eval.metrics``."""

from __future__ import annotations

import dataclasses
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rag_vqa import __version__
from rag_vqa.kb import PassageStore
from retriever.fileio import DIGEST, atomic_write_text, file_digest, loads_record, path_kind
from retriever.index.storage import read_manifest as read_index_manifest

from .datasets import EvalQuestion, read_questions
from .metrics import (KS, BEMScorer, load_evqa_references, load_infoseek_references,
                      normalize_answer, score_evqa, score_infoseek, score_retrieval)
from .runner import (PREDICTIONS, RUN_FILE, RunMismatchError, RunSpec, failure_kind,
                     latest_records, read_predictions, select_questions)

__all__ = ["build_report", "write_report", "summary_lines"]


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"rag-vqa": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__}


def _dataset_files(spec: dict[str, Any], identity: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Paths and digests of the dataset files (the questions' digest is the run's own)."""
    files = {}
    for key in ("questions", "qtypes", "withkb", "image_map"):
        if spec.get(key):
            recorded = (identity.get(key) or {}) if key in ("questions", "image_map") else {}
            digest = recorded.get("digest") or f"{DIGEST}:{file_digest(spec[key])}"
            files[key] = {"path": str(spec[key]), "digest": digest}
    return files


def _store_for(config: dict[str, Any], identity: dict[str, Any]) -> PassageStore | None:
    index = config.get("index", {})
    kb = ((identity.get("pipeline") or {}).get("kb") or {}).get("path") or index.get("kb")
    if not kb and index.get("path") and Path(index["path"]).is_dir():
        kb = (read_index_manifest(Path(index["path"])).get("metadata", {}).get("kb") or {}).get(
            "path")
    return PassageStore.open(kb) if kb and Path(kb).is_dir() else None


def _timing_stats(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for r in records:
        for stage, value in (r.get("timings") or {}).items():
            stages.setdefault(stage, []).append(float(value))
    return {stage: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)),
                    "p95": float(np.percentile(v, 95))} for stage, v in stages.items()}


def _retrieval(questions: dict[str, EvalQuestion], records: list[dict[str, Any]],
               store: PassageStore | None) -> dict[str, Any] | None:
    rankings = {r["data_id"]: [h["passage_id"] for h in r.get("retrieved", [])] for r in records}
    asked = [questions[i] for i in rankings if i in questions]
    positives = {q.data_id: q.positives for q in asked if q.positives} or None
    gold = {q.data_id: q.gold_articles for q in asked if q.gold_articles} or None
    answers = {q.data_id: q.answers for q in asked if q.answers} or None
    retrieved = sorted({pid for ranking in rankings.values() for pid in ranking})
    texts = articles = None
    if store is not None and retrieved:
        passages = store.get_many(retrieved)
        texts = {p.passage_id: p.text for p in passages}
        articles = {p.passage_id: p.article_id or p.passage_id for p in passages}
    if texts is None:
        answers = gold = None  # both need the passages' text / articles
    if not (positives or answers or gold):
        return None
    result = score_retrieval(rankings, positives=positives, answers=answers, passage_texts=texts,
                             gold_articles=gold, passage_articles=articles, ks=KS,
                             allow_missing=True)
    return result.to_dict()


def _qa(dataset: str, spec: dict[str, Any], records: list[dict[str, Any]],
        questions: dict[str, EvalQuestion], bem: str | None) -> dict[str, Any] | None:
    predictions = [{"data_id": r["data_id"], "prediction": r.get("prediction") or ""}
                   for r in records]
    if dataset == "infoseek":
        if not spec.get("qtypes"):
            return {"skipped": "pass --qtypes (infoseek_val_qtype.jsonl) to score answers"}
        refs = load_infoseek_references(spec["questions"], spec["qtypes"])
        refs = {i: refs[i] for i in questions if i in refs}   # this run's selection
        return {"infoseek": score_infoseek(predictions, refs, allow_missing=True).to_json()}
    if dataset == "evqa":
        refs = load_evqa_references(spec["questions"])
        refs = {i: refs[i] for i in questions if i in refs}
        scorer = BEMScorer(bem) if bem else None
        return {"evqa": score_evqa(predictions, refs, bem=scorer, allow_missing=True).to_json()}
    answered = [p for p in predictions if questions[p["data_id"]].answers]
    if not answered:
        return None
    correct = sum(any(normalize_answer(p["prediction"]) == normalize_answer(str(a))
                      for a in questions[p["data_id"]].answers) for p in answered)
    return {"exact_match": {"accuracy": 100.0 * correct / len(answered), "count": len(answered),
                            "method": "EM with InfoSeek normalisation"}}


def _read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if path_kind(path) != "file":
        raise RunMismatchError(f"{run_dir} is not an evaluation run folder (no {RUN_FILE}); "
                               "'rag-vqa eval run --out DIR' makes one")
    try:
        run = loads_record(path.read_bytes())
    except ValueError as exc:
        raise RunMismatchError(f"{path} is damaged ({exc})") from None
    if not isinstance(run, dict) or not all(isinstance(run.get(k), dict)
                                            for k in ("spec", "config")):
        raise RunMismatchError(f"{path} is damaged: no 'spec' and 'config' objects")
    return run


def _failures(failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The most common failure reasons, each with one full example."""
    kinds = Counter(failure_kind(r.get("error")) for r in failed)
    example = {}
    for r in failed:
        example.setdefault(failure_kind(r.get("error")), r.get("error"))
    return [{"reason": kind, "count": n, "example": example[kind]}
            for kind, n in kinds.most_common(10)]


def build_report(run_dir: str | Path, bem: str | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    spec = run["spec"]
    fields = {f.name for f in dataclasses.fields(RunSpec)}
    run_spec = RunSpec(**{k: v for k, v in spec.items() if k in fields})
    found = read_questions(spec["dataset"], spec["questions"], qtypes=spec.get("qtypes"),
                           withkb=spec.get("withkb"), skip_bad=run_spec.skip_bad)
    questions = {q.data_id: q for q in select_questions(found.questions, run_spec)}
    # a run restarted with a smaller --limit keeps its older records: report this selection;
    # exactly one record per question, the last one written
    latest = latest_records(read_predictions(run_dir / PREDICTIONS, repair=False))
    records = [latest[i] for i in questions if i in latest]
    failed = [r for r in records if r.get("status") == "failed"]
    store = _store_for(run["config"], run.get("identity") or {})
    retrieval = _retrieval(questions, records, store)
    qa = None if spec.get("retrieval_only") else _qa(spec["dataset"], spec, records, questions,
                                                       bem)
    report = {
        "run": {"dataset": spec["dataset"], "retrieval_only": spec.get("retrieval_only"),
                "shard": spec.get("shard"), "limit": spec.get("limit"), "k": spec.get("k"),
                "started": run.get("started")},
        "config": run["config"],
        "models": {"retriever": run["config"]["retriever"]["model"],
                   "generator": None if spec.get("retrieval_only")
                   else run["config"]["generator"]["model"]},
        "versions": _versions(), "dataset_files": _dataset_files(spec, run["identity"]),
        "coverage": {"selected": len(questions), "done": len(records), "failed": len(failed),
                     "remaining": len(questions) - len(records),
                     **({"skipped_records": found.skipped} if found.skipped else {})},
        "failures": _failures(failed),
        "retrieval": retrieval, "qa": qa, "timings": _timing_stats(records),
    }
    report["summary"] = {"dataset": spec["dataset"], **report["coverage"],
                         "retrieval": retrieval and {m: retrieval[m] for m in
                                                     ("recall", "pseudo_recall", "entity_recall")},
                         "qa": qa}
    return report


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation: {report['run']['dataset']}", "",
             f"Retriever `{report['models']['retriever']}`, generator "
             f"`{report['models']['generator']}`; {report['coverage']['done']} of "
             f"{report['coverage']['selected']} questions done, "
             f"{report['coverage']['failed']} failed"
             + (f"; {report['coverage']['skipped_records']} unusable question records left "
                "out (--skip-bad)" if report["coverage"].get("skipped_records") else "")
             + ".", ""]
    retrieval = report.get("retrieval")
    if retrieval:
        lines += ["## Retrieval", "", "| metric | " + " | ".join(f"@{k}" for k in KS) + " |",
                  "|---|" + "---|" * len(KS)]
        for name in ("recall", "pseudo_recall", "entity_recall"):
            if retrieval.get(name):
                lines.append(f"| {name} | " + " | ".join(
                    f"{100 * retrieval[name][f'@{k}']:.2f}" for k in KS) + " |")
        lines.append("")
    qa = report.get("qa") or {}
    if "infoseek" in qa:
        s = qa["infoseek"]
        lines += ["## InfoSeek (official rules)", "",
                  f"- final score (harmonic mean of split scores): **{s['final_score']:.2f}**",
                  f"- overall accuracy (all questions): {s['overall_accuracy']:.2f}", "",
                  "| split | score | time | numerical | string | count |",
                  "|---|---|---|---|---|---|"]
        for split in ("unseen_question", "unseen_entity"):
            r = s[split]
            lines.append(f"| {split} | {r['score']:.2f} | {r['score_time']:.2f} | "
                         f"{r['score_num']:.2f} | {r['score_string']:.2f} | {r['count']} |")
        lines.append("")
    if "evqa" in qa:
        s = qa["evqa"]
        lines += [f"## Encyclopedic-VQA ({s['method']})", "", "| subset | accuracy | count |",
                  "|---|---|---|",
                  f"| single-hop | {s['single_hop']['accuracy']:.2f} | "
                  f"{s['single_hop']['count']} |",
                  f"| all | {s['all']['accuracy']:.2f} | {s['all']['count']} |"]
        lines += [f"| {t} | {v['accuracy']:.2f} | {v['count']} |" for t, v in s["per_type"].items()]
        lines.append("")
    if "exact_match" in qa:
        em = qa["exact_match"]
        lines += ["## Answers", "", f"- {em['method']}: {em['accuracy']:.2f} ({em['count']})", ""]
    if report.get("timings"):
        lines += ["## Time per question (seconds)", "", "| stage | mean | p50 | p95 |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {v['mean']:.4f} | {v['p50']:.4f} | {v['p95']:.4f} |"
                  for k, v in report["timings"].items()]
        lines.append("")
    if report.get("failures"):
        lines += ["## Failures", ""] + [f"- {f['count']} x {f['reason']} (e.g. {f['example']})"
                                        for f in report["failures"]] + [""]
    return "\n".join(lines)


def plots(report: dict[str, Any], run_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    retrieval = report.get("retrieval") or {}
    curves = {n: retrieval[n] for n in ("recall", "pseudo_recall", "entity_recall")
              if retrieval.get(n)}
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, values in curves.items():
            ax.plot(KS, [100 * values[f"@{k}"] for k in KS], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(KS, [str(k) for k in KS])
        ax.set(xlabel="K", ylabel="%", title="Retrieval @K", ylim=(0, 100))
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "recall_at_k.png", dpi=100)
        plt.close(fig)
        written.append("recall_at_k.png")
    qa = report.get("qa") or {}
    bars: dict[str, float] = {}
    if "infoseek" in qa:
        s = qa["infoseek"]
        for split in ("unseen_question", "unseen_entity"):
            for key, label in (("score", "all"), ("score_time", "time"),
                               ("score_num", "numerical"), ("score_string", "string")):
                bars[f"{split.split('_')[1]}/{label}"] = s[split][key]
    if "evqa" in qa:
        bars = {t: v["accuracy"] for t, v in qa["evqa"]["per_type"].items()}
    if bars:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(list(bars), list(bars.values()))
        ax.set(ylabel="accuracy %", title="Accuracy by split and question type", ylim=(0, 100))
        ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(run_dir / "accuracy.png", dpi=100)
        plt.close(fig)
        written.append("accuracy.png")
    return written


def write_report(run_dir: str | Path, bem: str | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    report = build_report(run_dir, bem)
    report["plots"] = plots(report, run_dir)
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(run_dir / "report.md", markdown(report))
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    return [line for line in markdown(report).splitlines() if line.strip()]
