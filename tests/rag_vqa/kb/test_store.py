import copy
import multiprocessing
import sqlite3
import threading

import pytest

from rag_vqa.kb.errors import DuplicatePassageError, KBStoreError
from rag_vqa.kb.records import Passage
from rag_vqa.kb.store import BATCH_ROWS, PassageStore

from .kbdata import sentence_text


def sample_passages(n=40):
    return [Passage(passage_id=f"a{i // 4}#0-{i % 4}", text=sentence_text(i, 8) if i % 7 else "",
                    title=f"Article {i // 4}", section="Intro" if i % 2 else None,
                    article_id=f"a{i // 4}", url=f"https://w/a{i // 4}",
                    image=f"img/{i}.jpg" if i % 3 == 0 else None, language="en",
                    extra={"n": i, "tags": ["x", "é"]} if i % 5 == 0 else None)
            for i in range(n)]


@pytest.fixture
def kb(tmp_path):
    """A finished KB folder holding sample_passages()."""
    folder = tmp_path / "kb"
    store = PassageStore.create(folder)
    assert store.add_many(sample_passages()) == 40
    store.finalize({"format": "test", "image_root": str(tmp_path / "images")})
    return folder


def test_create_add_and_read_back(kb):
    passages = sample_passages()
    with PassageStore.open(kb) as store:
        assert len(store) == len(passages)
        assert [p for _, p in store.iter_rows()] == passages
        assert store.get("a3#0-2") == passages[14]
        assert store.row_of("a3#0-2") == 14
        asked = ["a9#0-3", "a0#0-0", "a9#0-3", "a2#0-1"]
        assert store.get_many(asked) == [passages[39], passages[0], passages[39], passages[9]]
        assert store.get_rows([39, 0, 39, 9]) == [passages[39], passages[0], passages[39],
                                                  passages[9]]
        assert store.passages_of_article("a2") == passages[8:12]
        assert store.passages_of_article("nope") == []


def test_missing_ids_and_rows_are_named(kb):
    with PassageStore.open(kb) as store:
        with pytest.raises(KeyError, match="'zzz'"):
            store.get("zzz")
        with pytest.raises(KeyError, match="'zzz'"):
            store.get_many(["a0#0-0", "zzz"])
        with pytest.raises(KeyError, match="'zzz'"):
            store.row_of("zzz")
        with pytest.raises(IndexError, match="row 40"):
            store.get_rows([0, 40])
        with pytest.raises(IndexError, match="row -1"):
            store.get_rows([-1])


@pytest.mark.parametrize("start,stop,batch", [(0, None, 1000), (5, 17, 3), (38, 100, 1),
                                              (10, 10, 4), (0, 40, 40)])
def test_iter_rows_ranges(kb, start, stop, batch):
    passages = sample_passages()
    with PassageStore.open(kb) as store:
        got = list(store.iter_rows(start, stop, batch_size=batch))
    end = len(passages) if stop is None else min(stop, len(passages))
    assert got == [(r, passages[r]) for r in range(start, end)]


def test_many_ids_are_queried_in_chunks(tmp_path):
    store = PassageStore.create(tmp_path / "kb")
    passages = [Passage(f"p{i}", f"t{i}") for i in range(BATCH_ROWS + 700)]
    store.add_many(passages)
    ids = [p.passage_id for p in reversed(passages)]
    assert store.get_many(ids) == passages[::-1]
    assert store.get_rows(range(len(passages) - 1, -1, -1)) == passages[::-1]
    store.close()


def test_duplicates_are_refused_by_name_and_roll_back_their_batch(tmp_path):
    store = PassageStore.create(tmp_path / "kb")
    store.add_many([Passage("a", "1"), Passage("b", "2")])
    with pytest.raises(DuplicatePassageError, match="'b'"):
        store.add_many([Passage("c", "3"), Passage("b", "again")])
    with pytest.raises(DuplicatePassageError, match="'d'"):
        store.add_many([Passage("d", "4"), Passage("d", "4 again")])
    assert len(store) == 2 and [p.passage_id for _, p in store.iter_rows()] == ["a", "b"]
    store.add_many([Passage("c", "3")])
    assert store.row_of("c") == 2  # rows stay dense after a rolled-back batch
    store.close()


def test_insert_groups_refuses_whole_groups(tmp_path):
    store = PassageStore.create(tmp_path / "kb")
    store.add_many([Passage("x", "")])
    with store.transaction():
        refused = store.insert_groups([[Passage("a", ""), Passage("b", "")],
                                       [Passage("c", ""), Passage("x", "")],
                                       [Passage("d", ""), Passage("d", "")],
                                       [Passage("e", "")]])
    assert refused == [(1, "x"), (2, "d")]
    assert [(r, p.passage_id) for r, p in store.iter_rows()] == \
        [(0, "x"), (1, "a"), (2, "b"), (3, "e")]
    with pytest.raises(KBStoreError, match="inside store.transaction"):
        store.insert_groups([[Passage("f", "")]])
    store.close()


def test_open_refuses_unfinished_and_non_kb_folders(tmp_path):
    store = PassageStore.create(tmp_path / "kb")
    store.add_many([Passage("a", "")])
    with pytest.raises(KBStoreError, match="unfinished import"):
        PassageStore.open(tmp_path / "kb")
    store.close()
    with pytest.raises(KBStoreError, match="already holds"):
        PassageStore.create(tmp_path / "kb")
    with pytest.raises(KBStoreError, match="not a knowledge-base folder"):
        PassageStore.open(tmp_path)


def test_finalized_kb_is_one_self_described_file(kb):
    import json

    import xxhash

    manifest = json.loads((kb / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["format_version"] == 2
    data = (kb / "passages.sqlite").read_bytes()
    assert manifest["files"]["passages.sqlite"] == {
        "bytes": len(data), "xxh3_128": xxhash.xxh3_128(data).hexdigest()}
    assert manifest["counts"]["passages"] == 40
    assert sorted(p.name for p in kb.iterdir()) == ["manifest.json", "passages.sqlite"]
    with PassageStore.open(kb) as store:
        store.verify()
        assert store._db().execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_rewritten_passage_of_the_same_size_is_refused(kb):
    """An edit that keeps the file size (a passage text rewritten in place) is caught by the
    digest that the default open checks; only verify="size" (or "none") lets it through."""
    path = kb / "passages.sqlite"
    data = path.read_bytes()
    passage = sample_passages()[3].text.encode("utf-8")
    assert data.count(passage) == 1
    path.write_bytes(data.replace(passage, passage.upper()))
    with pytest.raises(KBStoreError, match="differs from the recorded digest"):
        PassageStore.open(kb)
    with PassageStore.open(kb, verify="size") as store:  # the user's explicit choice
        assert store.get_rows([3])[0].text == sample_passages()[3].text.upper()


def test_read_only_store_refuses_writes_and_detects_changes(kb):
    with PassageStore.open(kb) as store:
        with pytest.raises(KBStoreError, match="read-only"):
            store.add_many([Passage("new", "")])
    with sqlite3.connect(kb / "passages.sqlite") as conn:  # someone edits the file behind our back
        conn.execute("CREATE TABLE junk(x)")
        conn.executemany("INSERT INTO junk VALUES (?)", [("x" * 1000,)] * 50)
    with pytest.raises(KBStoreError, match="changed since the import"):
        PassageStore.open(kb)


def test_concurrent_readers_in_threads(kb):
    passages = sample_passages()
    errors = []
    with PassageStore.open(kb) as store:
        def work(seed):
            try:
                for k in range(50):
                    rows = [(seed * 7 + k * 3 + j) % 40 for j in range(5)]
                    assert store.get_rows(rows) == [passages[r] for r in rows]
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors


def _rows_in_child(store, queue):
    queue.put([p.passage_id for p in store.get_rows([0, 39])])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_store_reconnects_in_worker_processes(kb, method):
    context = multiprocessing.get_context(method)
    with PassageStore.open(kb) as store:
        store.get("a0#0-0")  # the parent has used its connection
        queue = context.Queue()
        child = context.Process(target=_rows_in_child, args=(store, queue))
        child.start()
        got = queue.get(timeout=60)
        child.join(timeout=60)
        assert got == ["a0#0-0", "a9#0-3"] and child.exitcode == 0
        assert store.get_rows([1])[0].passage_id == "a0#0-1"  # the parent's still works


def test_copy_round_trip_and_writable_refusal(kb, tmp_path):
    """The state protocol worker processes use (spawned DataLoader workers): a read-only
    store travels as its folder and reopens; a writable one refuses to travel."""
    with PassageStore.open(kb) as store:
        clone = copy.copy(store)
        assert clone.get_rows([5]) == store.get_rows([5]) and len(clone) == 40
        clone.close()
    writable = PassageStore.create(tmp_path / "other")
    with pytest.raises(TypeError, match="read-only"):
        copy.copy(writable)
    writable.close()


def test_image_root_and_resolution(kb, tmp_path):
    (tmp_path / "images" / "img").mkdir(parents=True)
    (tmp_path / "images" / "img" / "0.jpg").write_bytes(b"x")
    with PassageStore.open(kb) as store:
        assert store.image_root == tmp_path / "images"
        first, third = store.get_rows([0, 3])
        assert store.resolve_image(first) == (tmp_path / "images" / "img" / "0.jpg").resolve()
        assert store.resolve_image(third) is None  # file missing
        assert store.resolve_image(store.get_rows([1])[0]) is None  # no image
    with PassageStore.open(kb, image_root=tmp_path / "elsewhere") as store:
        assert store.image_root == tmp_path / "elsewhere"


def test_closed_store_says_so(kb):
    store = PassageStore.open(kb)
    store.close()
    with pytest.raises(KBStoreError, match="closed"):
        store.get("a0#0-0")
