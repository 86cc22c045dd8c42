"""MultiVectorIndex: exact and plaid search, persistence, add/remove, integrity checks."""

import json

import numpy as np
import pytest
import torch

from retriever.index import IndexFormatError, MultiVectorIndex
from tests.helpers import clustered_embeddings


def direct_maxsim(queries, docs):
    """sum_i max_j q_i . d_j, written out with numpy in float64."""
    q = queries.astype(np.float64)
    d = docs.astype(np.float64)
    return np.einsum("qid,njd->qnij", q, d).max(axis=3).sum(axis=2)


@pytest.fixture(scope="module")
def data():
    return clustered_embeddings(600, 40, seed=7)


@pytest.fixture(scope="module")
def exact_index(tmp_path_factory, data):
    docs, _, _ = data
    return MultiVectorIndex.build(tmp_path_factory.mktemp("exact"), [f"doc-{i}" for i in
                                  range(len(docs))], docs, method="exact")


@pytest.fixture(scope="module")
def plaid_index(tmp_path_factory, data):
    docs, _, _ = data
    return MultiVectorIndex.build(tmp_path_factory.mktemp("plaid"), list(range(len(docs))), docs,
                                  method="plaid", nbits=4, num_centroids=256)


def test_exact_search_equals_direct_maxsim(exact_index, data):
    docs, queries, _ = data
    expected = direct_maxsim(queries[:5], docs)
    results = exact_index.search(queries[:5], k=7)
    for qi, hits in enumerate(results):
        order = np.argsort(-expected[qi], kind="stable")[:7]
        assert [h.doc_id for h in hits] == [f"doc-{i}" for i in order]
        assert np.allclose([h.score for h in hits], expected[qi][order], atol=1e-3)
        assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)


def test_plaid_recall_against_exact(plaid_index, exact_index, data):
    _, queries, targets = data
    exact = exact_index.search(queries, k=10)
    approx = plaid_index.search(queries, k=10)
    recall = np.mean([len({int(h.doc_id.split("-")[1]) for h in e} & {h.doc_id for h in a}) / 10
                      for e, a in zip(exact, approx)])
    assert recall >= 0.9
    pos1_exact = np.mean([int(e[0].doc_id.split("-")[1]) == t for e, t in zip(exact, targets)])
    pos1 = np.mean([a[0].doc_id == t for a, t in zip(approx, targets)])
    assert pos1 >= pos1_exact - 0.05


def test_plaid_scores_are_exact_maxsim_on_stored_vectors(plaid_index, data):
    docs, queries, _ = data
    hits = plaid_index.search(queries[:3], k=5)
    for qi, row in enumerate(hits):
        ids = [h.doc_id for h in row]
        expected = direct_maxsim(queries[qi:qi + 1], docs[ids].astype(np.float32))[0]
        assert np.allclose([h.score for h in row], expected, atol=1e-3)


@pytest.mark.parametrize("nbits", [2, 8])
def test_without_float16_copy_scores_come_from_decompressed_vectors(tmp_path, data, nbits):
    docs, queries, _ = data
    index = MultiVectorIndex.build(tmp_path / "nof16", list(range(len(docs))), docs,
                                   method="plaid", nbits=nbits, num_centroids=128,
                                   keep_float16=False)
    assert not any(name.startswith("embeddings") for name in index.manifest["files"])
    hits = index.search(queries[:2], k=4)
    for qi, row in enumerate(hits):
        rows = torch.tensor([h.doc_id for h in row])
        decompressed = index.engine.decompress(rows).numpy()
        expected = direct_maxsim(queries[qi:qi + 1], decompressed)[0]
        assert np.allclose([h.score for h in row], expected, atol=1e-3)
        exact = direct_maxsim(queries[qi:qi + 1], docs[rows.numpy()].astype(np.float32))[0]
        assert np.allclose(expected, exact, rtol=0.08 if nbits == 2 else 0.005)


def test_save_load_round_trip(plaid_index, data):
    _, queries, _ = data
    again = MultiVectorIndex.load(plaid_index.path)
    assert len(again) == len(plaid_index) and again.method == "plaid"
    assert again.search(queries[:4], k=5) == plaid_index.search(queries[:4], k=5)


@pytest.mark.parametrize("method", ["exact", "plaid"])
def test_add_and_remove(tmp_path, data, method):
    docs, queries, targets = data
    half = len(docs) // 2
    params = {"num_centroids": 128} if method == "plaid" else {}
    index = MultiVectorIndex.build(tmp_path / method, [f"d{i}" for i in range(half)], docs[:half],
                                   method=method, **params)
    report = index.add([f"d{i}" for i in range(half, len(docs))], docs[half:])
    assert report.added == len(docs) - half and len(index) == len(docs)
    target = int(targets[0])
    assert index.search(queries[:1], k=1)[0][0].doc_id == f"d{target}"
    assert index.remove([f"d{target}"]) == 1
    assert len(index) == len(docs) - 1
    hits = index.search(queries[:1], k=len(docs))[0]
    assert f"d{target}" not in {h.doc_id for h in hits}
    assert len(hits) <= len(docs) - 1
    with pytest.raises(KeyError, match="d9999"):
        index.remove(["d9999", "d1"])
    assert len(index) == len(docs) - 1  # all or nothing
    with pytest.raises(ValueError, match="already in the index"):
        index.add(["d1"], docs[:1])
    index.save()
    reloaded = MultiVectorIndex.load(index.path)
    assert len(reloaded) == len(docs) - 1
    assert f"d{target}" not in {h.doc_id for h in reloaded.search(queries[:1], k=20)[0]}
    # a removed id can come back, under a new row
    reloaded.add([f"d{target}"], docs[target:target + 1])
    assert reloaded.search(queries[:1], k=1)[0][0].doc_id == f"d{target}"
    reloaded.save()
    assert len(MultiVectorIndex.load(index.path)) == len(docs)


def test_adding_much_more_than_was_trained_advises_a_rebuild(tmp_path, data):
    docs, _, _ = data
    index = MultiVectorIndex.build(tmp_path / "small", list(range(100)), docs[:100],
                                   method="plaid", num_centroids=64)
    report = index.add(list(range(100, 400)), docs[100:400])
    assert report.rebuild_advised and "rebuild" in report.rebuild_advised
    index.save()
    assert MultiVectorIndex.load(index.path).manifest["rebuild_advised"]


def test_corrupt_and_mismatched_files_are_reported(tmp_path, data):
    docs, _, _ = data
    index = MultiVectorIndex.build(tmp_path / "ix", list(range(50)), docs[:50], method="plaid",
                                   num_centroids=32)
    path = index.path
    codes = next(index.data_path.glob("codes-*.npy"))
    raw = bytearray(codes.read_bytes())
    raw[-2], raw[-4] = raw[-4], raw[-2]  # two codes swapped: still valid codes, wrong documents
    codes.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match=f"{codes.name}: content differs from its "
                                               "recorded digest"):
        MultiVectorIndex.load(path)
    MultiVectorIndex.load(path, verify="size")  # same size, in range: only a full check sees it
    raw[-1] ^= 0xFF  # a flipped high byte: a centroid code that does not exist
    codes.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match=r"codes of segment 0 hold values outside"):
        MultiVectorIndex.load(path, verify="size")
    codes.write_bytes(bytes(raw[:-10]))
    with pytest.raises(IndexFormatError, match="bytes, manifest says"):
        MultiVectorIndex.load(path, verify="size")
    codes.unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        MultiVectorIndex.load(path, verify="size")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="version 99"):
        MultiVectorIndex.load(path)
    with pytest.raises(IndexFormatError, match="no manifest.json"):
        MultiVectorIndex.load(tmp_path)


@pytest.mark.parametrize("edit", [
    lambda m: m.update(method="exact"),
    lambda m: m["counts"].update(live=m["counts"]["live"] - 1),
    lambda m: m.update(metadata={"retriever": {"name": "someone-else"}}),
    lambda m: next(iter(m["files"].values())).update(xxh3_128="0" * 32),
    lambda m: m.pop("manifest_digest"),
])
def test_any_edit_of_the_manifest_is_refused(tmp_path, data, edit):
    docs, _, _ = data
    index = MultiVectorIndex.build(tmp_path / "ix", list(range(40)), docs[:40], method="plaid",
                                   num_centroids=16)
    manifest = json.loads((index.path / "manifest.json").read_text())
    edit(manifest)
    (index.path / "manifest.json").write_text(json.dumps(manifest))
    for verify in ("full", "size", "none"):
        with pytest.raises(IndexFormatError, match="manifest.json"):
            MultiVectorIndex.load(index.path, verify=verify)


@pytest.mark.parametrize("method", ["plaid", "exact"])
def test_a_rewritten_array_of_the_same_size_is_refused(tmp_path, data, method):
    """Every array, not only the codes: each file's digest is checked by the default load."""
    docs, _, _ = data
    index = MultiVectorIndex.build(tmp_path / "ix", [f"d{i}" for i in range(60)], docs[:60],
                                   method=method, num_centroids=16)
    for name in sorted(index.manifest["files"]):
        path = index.data_path / name
        original = path.read_bytes()
        header = len(original) - (len(original) // 2)
        path.write_bytes(original[:header] + bytes(reversed(original[header:])))
        if path.read_bytes() != original:
            with pytest.raises(IndexFormatError, match=name):
                MultiVectorIndex.load(index.path)
        path.write_bytes(original)
    MultiVectorIndex.load(index.path)


class FailingArray:
    """An array-like that fails after some rows: a build killed half-way."""

    def __init__(self, array, fail_after):
        self.array, self.shape, self.fail_after = array, array.shape, fail_after

    def __getitem__(self, key):
        if isinstance(key, slice) and (key.stop or 0) > self.fail_after:
            raise KeyboardInterrupt("killed")
        return self.array[key]


def test_overwrite_builds_beside_the_old_index_and_swaps(tmp_path, data):
    docs, queries, _ = data
    old = MultiVectorIndex.build(tmp_path / "ix", list(range(100)), docs[:100], method="plaid",
                                 num_centroids=32)
    before = old.search(queries[:5], k=5)
    with pytest.raises(KeyboardInterrupt):
        MultiVectorIndex.build(tmp_path / "ix", list(range(300)), FailingArray(docs[:300], 150),
                               method="plaid", num_centroids=32, overwrite=True, chunk_size=50)
    survivor = MultiVectorIndex.load(tmp_path / "ix")   # the old index, complete and verified
    assert len(survivor) == 100 and survivor.search(queries[:5], k=5) == before
    assert [p.name for p in (tmp_path / "ix").glob("data-*")] == [old.manifest["data"]]
    new = MultiVectorIndex.build(tmp_path / "ix", list(range(300)), docs[:300], method="exact",
                                 overwrite=True)
    assert len(MultiVectorIndex.load(tmp_path / "ix")) == 300 and new.method == "exact"
    assert [p.name for p in (tmp_path / "ix").glob("data-*")] == [new.manifest["data"]]


def test_build_validates_inputs(tmp_path, data):
    docs, queries, _ = data
    with pytest.raises(ValueError, match="got 3 document ids but 4 embeddings"):
        MultiVectorIndex.build(tmp_path / "a", [1, 2, 3], docs[:4])
    with pytest.raises(ValueError, match="duplicate document ids"):
        MultiVectorIndex.build(tmp_path / "a", [1, 1], docs[:2])
    with pytest.raises(TypeError, match="all integers or all strings"):
        MultiVectorIndex.build(tmp_path / "a", [1, "x"], docs[:2])
    with pytest.raises(ValueError, match="unknown index method"):
        MultiVectorIndex.build(tmp_path / "a", [1], docs[:1], method="hnsw")
    with pytest.raises(ValueError, match="nbits"):
        MultiVectorIndex.build(tmp_path / "a", [1], docs[:1], nbits=3)
    index = MultiVectorIndex.build(tmp_path / "b", [1, 2], docs[:2], method="exact")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        MultiVectorIndex.build(tmp_path / "b", [1, 2], docs[:2], method="exact")
    with pytest.raises(ValueError, match=r"queries must have shape \(Q, tokens, 128\)"):
        index.search(queries[0], k=1)
    with pytest.raises(TypeError, match="unknown search parameter"):
        index.search(queries[:1], k=1, nprobes=3)
    assert len(index.search(queries[:1], k=10)[0]) == 2


class CountingArray:
    """An array-like that records the largest block read, to prove build streams its input."""

    def __init__(self, array):
        self.array, self.shape, self.largest = array, array.shape, 0

    def __getitem__(self, key):
        block = self.array[key]
        self.largest = max(self.largest, len(block))
        return block


def test_build_streams_memory_mapped_input(tmp_path, data):
    docs, queries, _ = data
    np.save(tmp_path / "docs.npy", docs)
    mapped = CountingArray(np.load(tmp_path / "docs.npy", mmap_mode="r"))
    index = MultiVectorIndex.build(tmp_path / "ix", list(range(len(docs))), mapped,
                                   method="plaid", num_centroids=128, chunk_size=100,
                                   sample_size=3200)
    assert mapped.largest <= 100
    assert index.search(queries[:1], k=1)[0]


def test_documents_added_later_are_assigned_like_the_build(tmp_path, data):
    """assign_nprobe is part of the index: documents added after a reload are assigned with the
    build's setting (here one coarse cell), not a default."""
    from retriever.index.centroids import CentroidAssigner

    docs, _, _ = data
    half = len(docs) // 2
    index = MultiVectorIndex.build(tmp_path / "ix", list(range(half)), docs[:half],
                                   method="plaid", num_centroids=128, assign_nprobe=1)
    index = MultiVectorIndex.load(index.path)
    noise = np.random.default_rng(0).standard_normal((50,) + docs.shape[1:])  # far from cells
    added = (noise / np.linalg.norm(noise, axis=-1, keepdims=True)).astype(np.float16)
    index.add(list(range(half, half + 50)), added)
    index.save()
    assigner = CentroidAssigner(np.load(index.data_path / "centroids.npy"),
                                np.load(index.data_path / "coarse.npy"), nprobe=1)
    for seg, rows in ((0, docs[:half]), (1, added)):
        codes = np.load(index.data_path / f"codes-{seg:05d}.npy")
        expected = assigner.assign(rows.astype(np.float32).reshape(-1, rows.shape[-1]))
        assert np.array_equal(codes.reshape(-1), expected)
