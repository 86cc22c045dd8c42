"""Retrieval metrics with the M2KR / ReT conventions: Recall@K on positive passage ids,
pseudo-recall PR@K (an answer string inside a retrieved passage), and entity (article) recall
for KB-VQA. Values are fractions in [0, 1] (the ReT authors' script averages 0/1 hits)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .common import MAX_LISTED_IDS, MissingPredictionsError

__all__ = ["KS", "recall_at_k", "pseudo_recall_at_k", "entity_recall_at_k", "answer_text",
           "score_retrieval", "RetrievalResult", "first_hit", "ks_within", "query_ranks"]

KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100)


def _as_set(ids: Any) -> set[str]:
    """One id or a collection of ids, compared as strings (as the ReT script does)."""
    if ids is None:
        return set()
    if isinstance(ids, (str, int)):
        return {str(ids)}
    return {str(i) for i in ids}


def first_hit(hits: Sequence[bool]) -> int | None:
    """The 1-based rank of the first hit, None without one: hit@K for every K is
    ``rank is not None and rank <= K``, so one number per query keeps the whole curve."""
    return next((i + 1 for i, hit in enumerate(hits) if hit), None)


def ks_within(depth: int, ks: Iterable[int] = KS) -> list[int]:
    """The cut-offs a ranking of ``depth`` results can answer (Recall@50 of a top-10 is not
    a number)."""
    return [k for k in ks if k <= depth]


def _hits_at_k(hits: Sequence[bool], ks: Iterable[int]) -> dict[int, float]:
    """1.0 at K when any of the first K ranks is a hit (fewer than K results: what is there)."""
    rank = first_hit(hits)
    return {k: 1.0 if rank is not None and rank <= k else 0.0 for k in ks}


def recall_at_k(ranked_ids: Sequence[Any], positive_ids: Any,
                ks: Iterable[int] = KS) -> dict[int, float]:
    """1.0 at K when any positive passage id is among the top-K ids."""
    positives = _as_set(positive_ids)
    return _hits_at_k([str(pid) in positives for pid in ranked_ids], ks)


def answer_text(answer: Any) -> str:
    """An answer as a string: InfoSeek numerical answers {"wikidata": v, ...} become str(v)."""
    if isinstance(answer, Mapping):
        return str(answer["wikidata"])
    return answer if isinstance(answer, str) else str(answer)


def pseudo_recall_at_k(ranked_texts: Sequence[str | None], answers: Sequence[Any],
                       ks: Iterable[int] = KS) -> dict[int, float]:
    """1.0 at K when some answer, stripped and lowercased, is a substring of a lowercased top-K
    passage. As in the ReT authors' code an empty answer matches every passage."""
    needles = [answer_text(a).strip().lower() for a in answers]
    hits = [any(n in (text or "").lower() for n in needles) for text in ranked_texts]
    return _hits_at_k(hits, ks)


def entity_recall_at_k(ranked_article_ids: Sequence[Any], gold_article_ids: Any,
                       ks: Iterable[int] = KS, *, unique_articles: bool = False
                       ) -> dict[int, float]:
    """1.0 at K when a gold article (wikipedia_url, or Wikidata id for InfoSeek) is among the
    de-duplicated articles of the top-K passages (metrics.md), i.e. K counts passages.
    ``ranked_article_ids`` is the article of each ranked passage. With ``unique_articles``,
    repeated articles are dropped first so that K counts distinct articles instead (a variant
    some papers report)."""
    gold = _as_set(gold_article_ids)
    articles = [str(a) for a in ranked_article_ids]
    if unique_articles:
        articles = list(dict.fromkeys(articles))
    return _hits_at_k([a in gold for a in articles], ks)


@dataclass
class RetrievalResult:
    """Means over queries (fractions); a metric is None when its inputs were not given.
    ``count`` is the number of evaluated queries, ``counts`` how many each metric averaged."""

    recall: dict[int, float] | None
    pseudo_recall: dict[int, float] | None
    entity_recall: dict[int, float] | None
    count: int
    counts: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    missing_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def keyed(values: dict[int, float] | None) -> dict[str, float] | None:
            return None if values is None else {f"@{k}": v for k, v in values.items()}

        return {"recall": keyed(self.recall), "pseudo_recall": keyed(self.pseudo_recall),
                "entity_recall": keyed(self.entity_recall), "count": self.count,
                "counts": dict(self.counts), "missing": self.missing,
                "missing_ids": list(self.missing_ids)}


def _mean(rows: Sequence[dict[int, float]], ks: Sequence[int]) -> dict[int, float]:
    return {k: (sum(r[k] for r in rows) / len(rows)) if rows else 0.0 for k in ks}


def _lookup(mapping: Mapping[str, Any], pid: str, query: str, what: str) -> Any:
    try:
        return mapping[pid]
    except KeyError:
        raise ValueError(f"query {query!r}: retrieved passage {pid!r} is not in {what}") from None


_METRIC = {"recall": "recall", "pseudo": "pseudo_recall", "entity": "entity_recall"}


def _gold(positives: Mapping[str, Any] | None, answers: Mapping[str, Sequence[Any]] | None,
          gold_articles: Mapping[str, Any] | None) -> dict[str, dict[str, Any] | None]:
    return {name: {str(q): v for q, v in source.items()} if source is not None else None
            for name, source in (("recall", positives), ("pseudo", answers),
                                 ("entity", gold_articles))}


def _query_ranks(query: str, ranking: Sequence[Any], gold: dict[str, dict[str, Any] | None],
                 passage_texts: Mapping[str, str | None] | None,
                 passage_articles: Mapping[str, str] | None,
                 unique_articles: bool) -> dict[str, int | None]:
    """First-hit rank of each metric the query has gold data for (see :func:`first_hit`)."""
    ranked = [str(pid) for pid in ranking]
    out: dict[str, int | None] = {}
    if gold["recall"] is not None and query in gold["recall"]:
        positives = _as_set(gold["recall"][query])
        out["recall"] = first_hit([pid in positives for pid in ranked])
    if gold["pseudo"] is not None and query in gold["pseudo"]:
        texts = [_lookup(passage_texts, pid, query, "passage_texts")  # type: ignore[arg-type]
                 for pid in ranked]
        needles = [answer_text(a).strip().lower() for a in gold["pseudo"][query]]
        out["pseudo"] = first_hit([any(n in (t or "").lower() for n in needles) for t in texts])
    if gold["entity"] is not None and query in gold["entity"]:
        articles = [str(_lookup(passage_articles, pid, query, "passage_articles"))  # type: ignore
                    for pid in ranked]
        if unique_articles:
            articles = list(dict.fromkeys(articles))
        wanted = _as_set(gold["entity"][query])
        out["entity"] = first_hit([a in wanted for a in articles])
    return out


def query_ranks(rankings: Mapping[str, Sequence[Any]], *,
                positives: Mapping[str, Any] | None = None,
                answers: Mapping[str, Sequence[Any]] | None = None,
                passage_texts: Mapping[str, str | None] | None = None,
                gold_articles: Mapping[str, Any] | None = None,
                passage_articles: Mapping[str, str] | None = None,
                unique_articles: bool = False) -> dict[str, dict[str, int | None]]:
    """Per query, the 1-based rank of its first hit for each metric it has gold data for
    (``recall``, ``pseudo_recall``, ``entity_recall``; None: no hit), by the same rules as
    :func:`score_retrieval`: what paired comparisons and per-question reports need."""
    gold = _gold(positives, answers, gold_articles)
    queries = dict.fromkeys(q for source in gold.values() if source for q in source)
    rankings = {str(q): r for q, r in rankings.items()}
    return {q: {_METRIC[k]: v for k, v in _query_ranks(
        q, rankings.get(q, ()), gold, passage_texts, passage_articles, unique_articles).items()}
        for q in queries}


def score_retrieval(rankings: Mapping[str, Sequence[Any]], *,
                    positives: Mapping[str, Any] | None = None,
                    answers: Mapping[str, Sequence[Any]] | None = None,
                    passage_texts: Mapping[str, str | None] | None = None,
                    gold_articles: Mapping[str, Any] | None = None,
                    passage_articles: Mapping[str, str] | None = None,
                    ks: Sequence[int] = KS, unique_articles: bool = False,
                    allow_missing: bool = False) -> RetrievalResult:
    """Average per-query metrics. The evaluated queries are the keys of ``positives``,
    ``answers`` and ``gold_articles`` (each metric averages over the queries it has gold data
    for). ``rankings`` maps a query id to its ranked passage ids; pseudo-recall needs
    ``passage_texts`` (passage id -> text, None read as "") and entity recall
    ``passage_articles`` (passage id -> article id). A query without a ranking is an error
    unless ``allow_missing`` (it then scores 0 everywhere)."""
    if answers is not None and passage_texts is None:
        raise ValueError("pseudo-recall needs passage_texts (passage id -> text)")
    if gold_articles is not None and passage_articles is None:
        raise ValueError("entity recall needs passage_articles (passage id -> article id)")
    ks = list(ks)
    queries = list(dict.fromkeys(str(q) for source in (positives, answers, gold_articles)
                                 if source for q in source))
    rankings = {str(q): r for q, r in rankings.items()}
    missing = [q for q in queries if q not in rankings]
    if missing and not allow_missing:
        raise MissingPredictionsError(
            f"{len(missing)} of {len(queries)} queries have no ranking, e.g. "
            f"{', '.join(missing[:5])}; pass allow_missing=True to count them as misses")

    gold = _gold(positives, answers, gold_articles)
    ranks = {q: _query_ranks(q, rankings.get(q, ()), gold, passage_texts, passage_articles,
                             unique_articles) for q in queries}
    rows: dict[str, list[dict[int, float]]] = {
        name: [{k: float(r[name] is not None and r[name] <= k) for k in ks}
               for r in ranks.values() if name in r] for name in ("recall", "pseudo", "entity")}
    return RetrievalResult(
        recall=_mean(rows["recall"], ks) if positives is not None else None,
        pseudo_recall=_mean(rows["pseudo"], ks) if answers is not None else None,
        entity_recall=_mean(rows["entity"], ks) if gold_articles is not None else None,
        count=len(queries), counts={f"{k}_recall" if k != "recall" else k: len(v)
                                    for k, v in rows.items()},
        missing=len(missing), missing_ids=missing[:MAX_LISTED_IDS])
