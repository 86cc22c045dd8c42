"""The engine interface and the typed manifest: one declared shape for every index method."""

import numpy as np
import pytest

from retriever.index import IndexEngine, IndexManifest, MultiVectorIndex
from retriever.index.multivector import ENGINES
from retriever.index.params import BUILD_PARAMS
from retriever.index.segments import segment_file


def test_every_method_implements_the_engine_interface_and_has_typed_build_params():
    assert set(ENGINES) == set(BUILD_PARAMS) == {"exact", "plaid"}
    for method, engine in ENGINES.items():
        assert issubclass(engine, IndexEngine) and engine.method == method
        assert not engine.__abstractmethods__


def test_an_engine_missing_part_of_the_interface_cannot_be_made():
    class Half(IndexEngine):
        method = "half"

        def search(self, queries, k, deleted, **params):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_segment_files_have_one_spelling():
    assert segment_file("codes", 3) == "codes-00003.npy"
    assert segment_file("postings", 0, ".docs.npy") == "postings-00000.docs.npy"


@pytest.mark.parametrize("method", ["exact", "plaid"])
def test_the_typed_manifest_reads_what_the_build_recorded(tmp_path, method):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((60, 4, 16)).astype(np.float32)
    meta = {"retriever": {"name": "r", "weights_xxh3": "w"}, "kb": {"path": "/kb", "digest": "d"}}
    params = {"num_centroids": 8} if method == "plaid" else {}
    index = MultiVectorIndex.build(tmp_path / "ix", [f"p{i}" for i in range(60)], emb,
                                   method=method, metadata=meta, **params)
    index.remove(["p0"])
    index.save()
    for info in (index.info, MultiVectorIndex.read_info(tmp_path / "ix")):
        assert isinstance(info, IndexManifest)
        assert (info.method, info.tokens, info.dim) == (method, 4, 16)
        assert (info.rows, info.live) == (60, 59)
        assert info.retriever == meta["retriever"] and info.kb == meta["kb"]
        assert info.build_report == {} and info.rebuild_advised is None
        assert info.params == index.manifest["params"]
    if method == "plaid":
        assert index.info.params["num_centroids"] == 8 and index.info.params["nbits"] == 4
