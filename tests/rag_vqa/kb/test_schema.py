"""The passage store's file (rag_vqa.kb.schema): rows and back, opening, checks."""

import pytest

from rag_vqa.kb.errors import KBStoreError
from rag_vqa.kb.records import Passage
from rag_vqa.kb.schema import INSERT, SCHEMA, SELECT, connect, decode_row, encode_row, verify_file
from retriever.fileio import DIGEST, file_digest


def test_a_passage_survives_the_round_trip_through_its_row(tmp_path):
    passages = [Passage(passage_id="a#0", text="text é", title="T", section="S", article_id="a",
                        url="https://w/a", image="img/1.jpg", language="fr",
                        extra={"tags": ["x", "é"], "n": 1}),
                Passage(passage_id="b#0", text="")]
    db = connect(tmp_path / "p.sqlite", readonly=False)
    db.executescript(SCHEMA)
    db.executemany(INSERT, [encode_row(i, p) for i, p in enumerate(passages)])
    db.close()
    reader = connect(tmp_path / "p.sqlite", readonly=True)
    rows = [decode_row(v) for v in reader.execute(f"{SELECT} ORDER BY row").fetchall()]
    assert rows == list(enumerate(passages))
    with pytest.raises(Exception, match="readonly"):
        reader.execute(INSERT, encode_row(2, passages[1]))


def test_a_changed_file_is_refused_by_size_or_by_digest(tmp_path):
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"0123456789")
    entry = {"bytes": 10, DIGEST: file_digest(path)}
    verify_file(path, entry, "full")
    path.write_bytes(b"0123456780")  # same size, other content
    verify_file(path, entry, "size")
    with pytest.raises(KBStoreError, match="differs from the recorded digest"):
        verify_file(path, entry, "full")
    path.write_bytes(b"012")
    with pytest.raises(KBStoreError, match="3 bytes, the manifest says 10"):
        verify_file(path, entry, "size")
