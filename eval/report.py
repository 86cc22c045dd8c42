"""Reports of an evaluation run: ``report.json`` (every number, the configuration, model ids,
versions, dataset checksums), ``report.md`` (tables), ``questions.jsonl`` (per question),
PNG plots (:mod:`eval.plots`) and ``report.html`` (:mod:`eval.html_report`). Scores come from the
official-rule scorers in ``eval.metrics``; every score is a percentage, Recall@K stops at the
depth retrieved, and a category without questions is n/a (None), not 0."""

from __future__ import annotations

import dataclasses
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rag_vqa import __version__
from rag_vqa.components import index_metadata
from rag_vqa.kb import PassageStore
from retriever.fileio import DIGEST, atomic_write_text, file_digest, loads_record, path_kind

from .datasets import EvalQuestion, read_questions
from .metrics import (
    BEMScorer,
    load_evqa_references,
    load_infoseek_references,
    normalize_answer,
    score_evqa,
    score_infoseek,
    score_retrieval,
)
from .metrics.retrieval import ks_within, query_ranks
from .report_md import METRICS, markdown
from .runner import (
    PREDICTIONS,
    RUN_FILE,
    RunMismatchError,
    RunSpec,
    failure_kind,
    latest_records,
    read_predictions,
    select_questions,
)

__all__ = ["build_report", "write_report", "summary_lines", "markdown", "QUESTIONS", "METRICS"]

QUESTIONS = "questions.jsonl"     # one row per question: the HTML page and eval compare read it


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
        kb = (index_metadata(index["path"]).get("kb") or {}).get("path")
    return PassageStore.open(kb) if kb and Path(kb).is_dir() else None


def _timing_stats(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean / p50 / p95 per stage over questions. ``latency`` is each question's own wait (its
    batch's wall time); the model stages are the batch's time divided by its size."""
    stages: dict[str, list[float]] = {}
    for r in records:
        for stage, value in (r.get("timings") or {}).items():
            if stage != "batch_size":  # a count, not seconds: what ``latency`` covered
                stages.setdefault(stage, []).append(float(value))
    return {stage: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)),
                    "p95": float(np.percentile(v, 95)), "count": len(v)}
            for stage, v in stages.items()}


def _percent(result: dict[str, Any]) -> dict[str, Any]:
    """A RetrievalResult's means in percent (the report's one convention)."""
    out = dict(result)
    for name in METRICS:
        if out.get(name) is not None:
            out[name] = {k: 100.0 * v for k, v in out[name].items()}
    return out


def _gold_from_positives(asked: list[EvalQuestion], store: PassageStore) -> dict[str, list[str]]:
    """Gold articles of questions that only name positive passages (M2KR): the articles of
    those passages, where the KB knows one besides the passage itself (a title)."""
    wanted = sorted({p for q in asked if q.positives and not q.gold_articles
                     for p in q.positives})
    articles: dict[str, str] = {}
    for at in range(0, len(wanted), 500):
        part = wanted[at:at + 500]
        try:
            found = store.get_many(part)
        except KeyError:  # positives outside this KB: look them up one by one
            found = []
            for pid in part:
                try:
                    found.append(store.get(pid))
                except KeyError:
                    continue
        articles.update({p.passage_id: p.article_id for p in found
                         if p.article_id and p.article_id != p.passage_id})
    return {q.data_id: gold for q in asked if q.positives and not q.gold_articles
            and (gold := sorted({articles[p] for p in q.positives if p in articles}))}


def _retrieval(questions: dict[str, EvalQuestion], records: list[dict[str, Any]],
               store: PassageStore | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The retrieval section (percent; only K up to the depth retrieved; per split and per
    question type) and each question's first-hit ranks."""
    rankings = {r["data_id"]: [h["passage_id"] for h in r.get("retrieved", [])] for r in records}
    asked = [questions[i] for i in rankings if i in questions]
    depth = max((len(r) for r in rankings.values()), default=0)
    ks = sorted(set(ks_within(depth)) | ({depth} if depth else set()))  # and R@k of the run
    positives = {q.data_id: q.positives for q in asked if q.positives} or None
    gold = {q.data_id: q.gold_articles for q in asked if q.gold_articles}
    answers = {q.data_id: q.answers for q in asked if q.answers} or None
    retrieved = sorted({pid for ranking in rankings.values() for pid in ranking})
    texts = articles = None
    if store is not None and retrieved:
        passages = store.get_many(retrieved)
        texts = {p.passage_id: p.text for p in passages}
        articles = {p.passage_id: p.article_id or p.passage_id for p in passages}
        gold.update(_gold_from_positives(asked, store))
    if texts is None:
        answers, gold = None, {}  # both need the passages' text / articles
    if not (positives or answers or gold) or not ks:
        return None, {}
    inputs = dict(positives=positives, answers=answers, passage_texts=texts,
                  gold_articles=gold or None, passage_articles=articles)

    def score(ids: set[str] | None) -> dict[str, Any]:
        def only(mapping):
            return mapping if mapping is None or ids is None else \
                {i: v for i, v in mapping.items() if i in ids}
        chosen = {**inputs, **{k: only(inputs[k]) for k in ("positives", "answers",
                                                              "gold_articles")}}
        if all(not chosen[k] for k in ("positives", "answers", "gold_articles")):
            return {"count": 0}
        return _percent(score_retrieval(rankings, ks=ks, allow_missing=True, **chosen).to_dict())

    section = {**score(None), "ks": ks, "depth": depth}
    for key, attr in (("per_split", "split"), ("per_type", "question_type")):
        groups: dict[str, set[str]] = {}
        for q in asked:
            if getattr(q, attr):
                groups.setdefault(getattr(q, attr), set()).add(q.data_id)
        if groups:
            section[key] = {name: score(ids) for name, ids in sorted(groups.items())}
    return section, query_ranks(rankings, **inputs)


def _na(value: float, count: int) -> float | None:
    """A score of a category without questions is not 0: it is None ("n/a")."""
    return value if count else None


def _breakdown(questions: dict[str, EvalQuestion], verdicts: dict[str, dict[str, Any]]
               ) -> dict[str, dict[str, dict[str, Any]]]:
    """Accuracy (percent) and count per split and question type, "all" for the split total."""
    cells: dict[str, dict[str, list[int]]] = {}
    for data_id, v in verdicts.items():
        split = v.get("split") or questions[data_id].split or "all"
        kind = v.get("type") or questions[data_id].question_type
        for t in (["all"] + ([kind] if kind else [])):
            cells.setdefault(split, {}).setdefault(t, []).append(v["correct"])
    return {split: {t: {"accuracy": 100.0 * sum(c) / len(c), "count": len(c)}
                    for t, c in types.items()} for split, types in cells.items()}


def _qa(dataset: str, spec: dict[str, Any], records: list[dict[str, Any]],
        questions: dict[str, EvalQuestion], bem: str | None
        ) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The answers section (percent, official rules) and each question's verdict."""
    predictions = [{"data_id": r["data_id"], "prediction": r.get("prediction") or ""}
                   for r in records]
    verdicts: dict[str, dict[str, Any]] = {}
    if dataset == "infoseek":
        if not spec.get("qtypes"):
            return {"skipped": "pass --qtypes (infoseek_val_qtype.jsonl) to score answers"}, {}
        refs = load_infoseek_references(spec["questions"], spec["qtypes"])
        refs = {i: refs[i] for i in questions if i in refs}   # this run's selection
        result = score_infoseek(predictions, refs, allow_missing=True)
        out = result.to_json()
        for name in ("unseen_question", "unseen_entity"):
            split = getattr(result, name)
            for key, count in (("score", split.count), ("score_time", split.count_time),
                               ("score_num", split.count_num),
                               ("score_string", split.count_string)):
                out[name][key] = _na(out[name][key], count)
            out[name].update(count_time=split.count_time, count_num=split.count_num,
                             count_string=split.count_string)
        verdicts = {d.data_id: {"correct": d.correct, "split": d.split, "type": d.type}
                    for d in result.details}
        qa: dict[str, Any] = {"infoseek": out}
    elif dataset == "evqa":
        refs = load_evqa_references(spec["questions"])
        refs = {i: refs[i] for i in questions if i in refs}
        scorer = BEMScorer(bem) if bem else None
        result = score_evqa(predictions, refs, bem=scorer, allow_missing=True)
        out = result.to_json()
        for value in out["per_type"].values():
            value["accuracy"] = _na(value["accuracy"], value["count"])
        verdicts = {d.data_id: {"correct": d.correct, "type": d.type} for d in result.details}
        qa = {"evqa": out}
    else:
        answered = [p for p in predictions if questions[p["data_id"]].answers]
        if not answered:
            return None, {}
        for p in answered:
            verdicts[p["data_id"]] = {"correct": int(any(
                normalize_answer(p["prediction"]) == normalize_answer(str(a))
                for a in questions[p["data_id"]].answers))}
        correct = sum(v["correct"] for v in verdicts.values())
        qa = {"exact_match": {"accuracy": 100.0 * correct / len(answered),
                              "count": len(answered),
                              "method": "EM with InfoSeek normalisation"}}
    qa["breakdown"] = _breakdown(questions, verdicts)
    return qa, verdicts


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


def _abstained(records: list[dict[str, Any]]) -> dict[str, int]:
    """Issue 15: abstentions are counted apart (and scored wrong, as the official scorers
    would score "I don't know"); nothing when there were none."""
    count = sum(1 for r in records if r.get("abstained"))
    return {"abstained": count} if count else {}


def _question_rows(questions: dict[str, EvalQuestion], records: list[dict[str, Any]],
                   ranks: dict[str, Any], verdicts: dict[str, dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """One row per done question: what it asked, what came back and how it scored (first-hit
    ranks of each retrieval metric; ``correct`` a bool, None when answers were not scored)."""
    rows = []
    for r in records:
        q = questions[r["data_id"]]
        verdict = verdicts.get(q.data_id) or {}
        rows.append({"data_id": q.data_id, "question": q.question, "image": q.image,
                     "split": verdict.get("split") or q.split,
                     "type": verdict.get("type") or q.question_type, "answers": q.answers,
                     "positives": q.positives,
                     "prediction": r.get("prediction"), "status": r.get("status"),
                     "error": r.get("error"),
                     "correct": None if verdict.get("correct") is None
                     else bool(verdict["correct"]),
                     "ranks": ranks.get(q.data_id, {}), "retrieved": r.get("retrieved", []),
                     "latency": (r.get("timings") or {}).get("latency"),
                     # issue 15: reranking, confidence, abstention, citations when recorded
                     **{key: r[key] for key in ("first_stage", "reranked", "confidence",
                                                "abstained", "citations") if key in r}})
    return rows


def _build(run_dir: Path, bem: str | None) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                    PassageStore | None]:
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
    retrieval, ranks = _retrieval(questions, records, store)
    qa, verdicts = (None, {}) if spec.get("retrieval_only") else \
        _qa(spec["dataset"], spec, records, questions, bem)
    report = {
        "units": "percent (0-100) for every score and recall; counts are questions",
        "run": {"dataset": spec["dataset"], "retrieval_only": spec.get("retrieval_only"),
                "shard": spec.get("shard"), "limit": spec.get("limit"),
                "batch_size": spec.get("batch_size"),
                "k": spec.get("k") or run["config"].get("k"), "rankings": spec.get("rankings"),
                "started": run.get("started"), "folder": str(run_dir),
                "images": spec.get("images"), "image_map": spec.get("image_map")},
        "config": run["config"],
        "models": {"retriever": "(imported rankings)" if spec.get("rankings")
                   else run["config"]["retriever"]["model"],
                   "generator": None if spec.get("retrieval_only")
                   else run["config"]["generator"]["model"]},
        "versions": _versions(), "dataset_files": _dataset_files(spec, run["identity"]),
        "coverage": {"selected": len(questions), "done": len(records), "failed": len(failed),
                     "remaining": len(questions) - len(records),
                     **({"skipped_records": found.skipped} if found.skipped else {}),
                     **_abstained(records)},
        "failures": _failures(failed),
        "retrieval": retrieval, "qa": qa, "timings": _timing_stats(records),
    }
    report["summary"] = {"dataset": spec["dataset"], "units": "percent", **report["coverage"],
                         "retrieval": retrieval and {m: retrieval.get(m) for m in METRICS},
                         "qa": qa and {k: v for k, v in qa.items() if k != "breakdown"}}
    rows = _question_rows(questions, records, ranks, verdicts)
    _add_reranking(report, questions, records, rows, store)
    return report, rows, store


def _add_reranking(report: dict[str, Any], questions: dict[str, EvalQuestion],
                   records: list[dict[str, Any]], rows: list[dict[str, Any]],
                   store: PassageStore | None) -> None:
    """Issue 15: the index's own ranking scored beside the reranker's whole ranking, to the
    same depth (``retrieval`` is its top k, the generator's passages), and the
    selective-answering table (risk-coverage over the answers' confidence; ``selective.png``
    is drawn by write_report). Runs without a reranker have one stage: ``retrieval``."""
    from .calibrate import run_selective

    for key, field in (("retrieval_first_stage", "first_stage"),
                       ("retrieval_reranked", "reranked")):
        staged = [{**r, "retrieved": r[field]} for r in records if r.get(field)]
        if staged:
            report[key] = _retrieval(questions, staged, store)[0]
    if any(r.get("confidence") is not None for r in rows):
        selective = run_selective(rows)
        if selective is not None:
            selective.pop("curve")
            report["selective"] = selective


def build_report(run_dir: str | Path, bem: str | None = None) -> dict[str, Any]:
    """Every number of a run (see the module docstring); scores in percent."""
    return _build(Path(run_dir), bem)[0]


def write_report(run_dir: str | Path, bem: str | None = None) -> dict[str, Any]:
    """report.json, report.md, questions.jsonl, the plots and report.html (one page, nothing
    outside it) into the run folder."""
    from .html_report import write_html
    from .plots import report_plots

    run_dir = Path(run_dir)
    report, rows, store = _build(run_dir, bem)
    try:
        report["plots"] = report_plots(report, run_dir)
        if report.get("selective"):  # issue 15
            from .calibrate import run_selective

            run_selective(rows, plot=run_dir / "selective.png")
            report["plots"] = [*report["plots"], "selective.png"]
        atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=str))
        atomic_write_text(run_dir / "report.md", markdown(report))
        atomic_write_text(run_dir / QUESTIONS, "".join(
            json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        write_html(report, rows, store, run_dir)
    finally:
        if store is not None:
            store.close()
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    return [line for line in markdown(report).splitlines() if line.strip()]
