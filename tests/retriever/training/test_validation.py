"""Validation ranks in memory with MaxSim, as an exact index would, without writing one."""

import json

from retriever.index import MultiVectorIndex
from retriever.training import JsonlPassages, TrainQuery, recall_at_k


def test_recall_matches_an_exact_index_and_writes_nothing(tiny_retriever, tmp_path,
                                                           monkeypatch):
    texts = ["red white red", "blue yellow", "green white orange", "black red gold",
             "a white cross on red", "stars and stripes"]
    rows = [{"passage_id": f"p{i}", "passage_text": t} for i, t in enumerate(texts)]
    (tmp_path / "p.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    passages = JsonlPassages(tmp_path / "p.jsonl")
    queries = [TrainQuery(f"q{i}", t, None, [f"p{(i * 2) % 6}"])
               for i, t in enumerate(["red flag", "white cross", "blue", "stripes"])]
    ids = passages.ids()
    docs = tiny_retriever.encode_documents(texts, None)
    index = MultiVectorIndex.build(tmp_path / "ix", ids, docs.numpy(), method="exact")
    found = index.search(tiny_retriever.encode_queries([q.text for q in queries], None), k=3)
    expected = {f"recall@{k}": sum(any(h.doc_id in q.positives for h in hits[:k])
                                   for q, hits in zip(queries, found)) / len(queries)
                for k in (1, 3)}

    def no_index(*args, **kwargs):
        raise AssertionError("validation must not build an index")

    monkeypatch.setattr(MultiVectorIndex, "build", no_index)
    assert recall_at_k(tiny_retriever, queries, passages, ids, ks=(1, 3)) == expected
