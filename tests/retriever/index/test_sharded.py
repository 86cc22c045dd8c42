"""Sharded indexes: parts built apart, merged, searched, changed and verified as one."""

import json

import numpy as np
import pytest

from retriever.index import IndexFormatError, MultiVectorIndex
from retriever.index.sharded import ShardedIndex, merge_indexes
from tests.helpers import clustered_embeddings


@pytest.fixture(scope="module")
def data():
    return clustered_embeddings(500, 16, seed=11)


@pytest.fixture(scope="module")
def plaid_parts(tmp_path_factory, data):
    docs, _, _ = data
    root = tmp_path_factory.mktemp("plaid")
    a = MultiVectorIndex.build(root / "a", [f"d{i}" for i in range(250)], docs[:250],
                               method="plaid", num_centroids=128)
    b = MultiVectorIndex.build(root / "b", [f"d{i}" for i in range(250, 500)], docs[250:],
                               method="plaid", centroids=root / "a")
    return root, a, b


def test_merged_exact_index_equals_one_index_over_everything(tmp_path, data):
    docs, queries, _ = data
    ids = [f"d{i}" for i in range(500)]
    for lo, hi in ((0, 200), (200, 350), (350, 500)):
        MultiVectorIndex.build(tmp_path / f"p{lo}", ids[lo:hi], docs[lo:hi], method="exact")
    merged = merge_indexes([tmp_path / "p0", tmp_path / "p200", tmp_path / "p350"],
                           tmp_path / "merged")
    single = MultiVectorIndex.build(tmp_path / "single", ids, docs, method="exact")
    got, want = merged.search(queries, k=10), single.search(queries, k=10)
    assert [[h.doc_id for h in r] for r in got] == [[h.doc_id for h in r] for r in want]
    assert np.allclose([[h.score for h in r] for r in got], [[h.score for h in r] for r in want],
                       atol=1e-5)
    assert isinstance(merged, ShardedIndex) and len(merged) == 500
    assert len(MultiVectorIndex.load(tmp_path / "merged")) == 500


def test_merged_plaid_search_is_the_merge_of_the_parts(tmp_path, plaid_parts, data):
    _, queries, _ = data
    _root, a, b = plaid_parts
    assert a.manifest["params"]["centroids_digest"] == b.manifest["params"]["centroids_digest"]
    merged = MultiVectorIndex.load(merge_indexes([a.path, b.path], tmp_path / "m").path)
    for got, ha, hb in zip(merged.search(queries, k=8), a.search(queries, k=8),
                           b.search(queries, k=8)):
        expected = sorted(ha + hb, key=lambda h: -h.score)[:8]
        assert [h.doc_id for h in got] == [h.doc_id for h in expected]
    # the knob reaches every part
    assert merged.search(queries[:2], k=5, effort=2.0)


def test_add_and_remove_go_to_the_right_part_and_save_atomically(tmp_path, plaid_parts, data):
    docs, queries, _targets = data
    _root, a, b = plaid_parts
    merged = merge_indexes([a.path, b.path], tmp_path / "m")
    assert merged.remove(["d3", "d400"]) == 2
    assert merged.parts[0].deleted.sum() == 1 and merged.parts[1].deleted.sum() == 1
    with pytest.raises(KeyError, match="d3"):
        merged.remove(["d3"])
    with pytest.raises(ValueError, match="already in the index"):
        merged.add(["d7"], docs[:1])
    report = merged.add(["new-1", "new-2"], docs[:2])
    assert report.added == 2 and merged.parts[1].num_rows == 252
    # nothing is visible before save ...
    assert len(MultiVectorIndex.load(merged.path)) == 500
    merged.save()
    again = MultiVectorIndex.load(merged.path)
    assert len(again) == 500 and again.num_rows == 502
    assert "d3" not in {h.doc_id for h in again.search(queries, k=50)[0]}
    assert again.search(docs[:1].astype(np.float32), k=1)[0][0].doc_id in ("d0", "new-1")
    # each part also stands alone with the same state, and the sources are untouched
    assert len(MultiVectorIndex.load(again.parts[1].path)) == 251
    assert len(MultiVectorIndex.load(b.path)) == 250


def test_a_damaged_part_is_named(tmp_path, plaid_parts):
    _root, a, b = plaid_parts
    merged = merge_indexes([a.path, b.path], tmp_path / "m", link=False)
    codes = next(merged.parts[1].data_path.glob("codes-*.npy"))
    raw = bytearray(codes.read_bytes())
    raw[-2] = 0 if raw[-2] else 1  # another centroid code, still a valid one
    codes.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match=f"{merged.parts[1].path}.*{codes.name}"):
        MultiVectorIndex.load(merged.path)
    MultiVectorIndex.load(merged.path, verify="size")  # same size, codes in range
    # an edited part manifest (embedded in the sharded one) breaks the sharded seal
    manifest = json.loads((merged.path / "manifest.json").read_text())
    manifest["parts"][0]["manifest"]["counts"]["live"] -= 1
    (merged.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="manifest"):
        MultiVectorIndex.load(merged.path, verify="none")


def test_incompatible_or_overlapping_parts_are_refused(tmp_path, plaid_parts, data):
    docs, _, _ = data
    _root, a, _b = plaid_parts
    other = MultiVectorIndex.build(tmp_path / "other", [f"x{i}" for i in range(60)], docs[:60],
                                   method="plaid", num_centroids=32)
    with pytest.raises(ValueError, match="different centroids.*--centroids"):
        merge_indexes([a.path, other.path], tmp_path / "m")
    exact = MultiVectorIndex.build(tmp_path / "exact", [f"y{i}" for i in range(5)], docs[:5],
                                   method="exact")
    with pytest.raises(ValueError, match="different method"):
        merge_indexes([a.path, exact.path], tmp_path / "m")
    twin = MultiVectorIndex.build(tmp_path / "twin", ["d1", "z"], docs[:2], method="plaid",
                                  centroids=a.path)
    with pytest.raises(ValueError, match="'d1' is in both"):
        merge_indexes([a.path, twin.path], tmp_path / "m")
    with pytest.raises(ValueError, match="nbits"):
        MultiVectorIndex.build(tmp_path / "n2", ["q"], docs[:1], nbits=2, centroids=a.path)
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_merge_replaces_atomically_and_flattens_sharded_sources(tmp_path, plaid_parts, data):
    docs, _queries, _ = data
    _root, a, b = plaid_parts
    first = merge_indexes([a.path], tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite"):
        merge_indexes([a.path, b.path], tmp_path / "m")
    c = MultiVectorIndex.build(tmp_path / "c", ["c0", "c1"], docs[:2], method="plaid",
                               centroids=a.path)
    both = merge_indexes([tmp_path / "m", b.path, c.path], tmp_path / "m2")
    assert len(both.parts) == 3 and len(both) == 502
    again = merge_indexes([a.path, b.path], tmp_path / "m", overwrite=True)
    assert len(again.parts) == 2
    assert [p.name for p in (tmp_path / "m").glob("parts-*")] == [again.manifest["data"]]
    assert first.manifest["data"] != again.manifest["data"]
    # a single build may replace a sharded index too
    MultiVectorIndex.build(tmp_path / "m", ["s"], docs[:1], method="exact", overwrite=True)
    assert not list((tmp_path / "m").glob("parts-*"))


def test_index_merge_command(tmp_path, plaid_parts, capsys):
    from rag_vqa.cli import main

    _root, a, b = plaid_parts
    code = main(["index", "merge", str(a.path), str(b.path), "--out", str(tmp_path / "m"),
                 "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["parts"] == 2
    assert main(["index", "info", str(tmp_path / "m")]) == 0
