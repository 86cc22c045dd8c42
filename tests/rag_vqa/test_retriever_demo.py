import torch

from rag_vqa.loading import load_retriever
from rag_vqa.retriever_demo import SampleSearcher, run_retriever_demo
from rag_vqa.samples import question_image, sample_passages, sample_questions


def test_demo_report_ranks_by_maxsim():
    loaded = load_retriever("tiny")
    report = run_retriever_demo(loaded, k=60)
    assert report.num_documents == 60 and len(report.queries) == len(sample_questions())
    searcher = SampleSearcher(loaded)
    query = sample_questions()[0]
    feats = searcher.encode([query.question], [question_image(query)])
    direct = torch.einsum("qid,njd->qnij", feats, searcher.features).amax(-1).sum(-1)[0]
    expected = [searcher.documents[i].passage_id
                for i in direct.argsort(descending=True).tolist()]
    assert [d.doc_id for d in report.queries[0].ranking] == expected
    assert abs(report.queries[0].ranking[0].score - float(direct.max())) < 1e-4
    assert 0.0 <= report.accuracy_at_1 <= 1.0
    assert {p.passage_id for p in sample_passages()} >= {q.passage_id[0] for q in
                                                         sample_questions()}


def test_auto_falls_back_to_tiny_offline_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loaded = load_retriever("auto")
    assert loaded.is_tiny and "is not downloaded" in loaded.note
