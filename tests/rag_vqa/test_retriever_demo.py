import torch

from rag_vqa.loading import load_retriever
from rag_vqa.retriever_demo import SampleSearcher, run_retriever_demo
from rag_vqa.samples import sample_documents, sample_queries


def test_sample_flags_are_distinct_and_match_queries():
    docs, queries = sample_documents(), sample_queries()
    pixels = {d.doc_id: d.image.tobytes() for d in docs}
    assert len(set(pixels.values())) == len(docs)
    assert {q.positive_id for q in queries} == set(pixels)
    assert all(q.image.size != docs[0].image.size for q in queries)


def test_demo_report_ranks_by_maxsim():
    loaded = load_retriever("tiny")
    report = run_retriever_demo(loaded, k=8)
    searcher = SampleSearcher(loaded)
    query = sample_queries()[0]
    feats = searcher.encode([query.question], [query.image])
    direct = torch.einsum("qid,njd->qnij", feats, searcher.features).amax(-1).sum(-1)[0]
    expected = [searcher.documents[i].doc_id for i in direct.argsort(descending=True).tolist()]
    assert [d.doc_id for d in report.queries[0].ranking] == expected
    assert report.queries[0].ranking[0].score == float(direct.max())
    assert 0.0 <= report.accuracy_at_1 <= 1.0


def test_auto_falls_back_to_tiny_offline_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loaded = load_retriever("auto")
    assert loaded.is_tiny and "is not downloaded" in loaded.note
