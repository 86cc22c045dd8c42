"""rag-vqa index push / pull: an index and its KB through a local folder standing in for the
hub, verified on both sides; a damaged copy is never published nor put in place."""

import json

import numpy as np
import pytest

from rag_vqa.cli import main
from rag_vqa.indexing import build_index
from rag_vqa.indexing.sharing import pull_index, push_index
from rag_vqa.kb import PassageStore
from rag_vqa.loading import load_retriever
from retriever.index import MultiVectorIndex
from tests.rag_vqa.indexing.test_build import make_kb


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    kb, _ = make_kb(root, n=12)
    build_index(kb, load_retriever("tiny"), root / "index", method="exact", batch_size=4,
                workers=0)
    return root / "index", kb


def _search(path, queries):
    index = MultiVectorIndex.load(path)
    return [[(h.doc_id, round(h.score, 5)) for h in row] for row in index.search(queries, k=5)]


def test_push_then_pull_gives_the_same_index_and_kb(built, tmp_path):
    index, kb = built
    hub = tmp_path / "hub"
    pushed = push_index(index, "lab/flags-index", kb=kb, hub_dir=hub)
    repo = hub / "datasets" / "lab" / "flags-index"
    assert pushed.location == str(repo) and pushed.documents == 13
    card = (repo / "README.md").read_text()
    assert "lab/flags-index" in card and "13 passages" in card and pushed.digest in card

    pulled = pull_index("lab/flags-index", tmp_path / "copy", hub_dir=hub)
    assert (pulled.digest, pulled.kb_digest) == (pushed.digest, pushed.kb_digest)
    queries = np.random.default_rng(0).standard_normal((2, 32, 128)).astype(np.float32)
    assert _search(pulled.index, queries) == _search(index, queries)
    with PassageStore.open(pulled.kb) as copy, PassageStore.open(kb) as original:
        assert copy.ids() == original.ids()
        assert copy.get("P3") == original.get("P3")


def test_a_kb_the_index_was_not_built_from_is_refused(built, tmp_path):
    index, _ = built
    other, _ = make_kb(tmp_path, n=5, seed=1)
    with pytest.raises(ValueError, match="not the knowledge base"):
        push_index(index, "lab/x", kb=other, hub_dir=tmp_path / "hub")
    assert not (tmp_path / "hub" / "datasets" / "lab" / "x").exists()


def test_a_damaged_download_never_replaces_the_working_copy(built, tmp_path):
    index, _ = built
    hub = tmp_path / "hub"
    push_index(index, "lab/idx", hub_dir=hub)
    good = pull_index("lab/idx", tmp_path / "copy", hub_dir=hub)
    # the hub copy gets a flipped byte in one array: the next pull must refuse it
    arrays = sorted((hub / "datasets" / "lab" / "idx" / "index").rglob("embeddings-*.npy"))
    data = bytearray(arrays[0].read_bytes())
    data[-3] ^= 0x10
    arrays[0].write_bytes(bytes(data))
    with pytest.raises(ValueError, match="embeddings-00000.npy"):
        pull_index("lab/idx", tmp_path / "copy", hub_dir=hub, overwrite=True)
    assert MultiVectorIndex.load(good.index).digest == good.digest  # untouched, still loads
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".pull")]


def test_pull_into_a_non_empty_folder_needs_overwrite(built, tmp_path):
    index, _ = built
    push_index(index, "lab/idx", hub_dir=tmp_path / "hub")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        pull_index("lab/idx", tmp_path / "dest", hub_dir=tmp_path / "hub")
    assert (tmp_path / "dest" / "mine.txt").read_text() == "keep"


def test_cli_push_and_pull(built, tmp_path, capsys):
    index, kb = built
    hub = str(tmp_path / "hub")
    assert main(["index", "push", str(index), "lab/cli", "--kb", str(kb), "--hub-dir", hub,
                 "--json"]) == 0
    pushed = json.loads(capsys.readouterr().out)
    assert main(["index", "pull", "lab/cli", str(tmp_path / "got"), "--hub-dir", hub]) == 0
    out = capsys.readouterr().out
    assert "pulled exact index of 13 passages" in out and "knowledge base in" in out
    assert pushed["digest"][:28] in out
    assert main(["index", "pull", "lab/missing", str(tmp_path / "none"), "--hub-dir", hub,
                 "--json"]) == 2
    error = json.loads(capsys.readouterr().out)
    assert "no dataset repository lab/missing" in error["error"]
