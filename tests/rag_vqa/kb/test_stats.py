import os

import numpy as np
import pytest

from rag_vqa.kb.errors import KBStoreError
from rag_vqa.kb.imagerefs import url_to_relpath
from rag_vqa.kb.records import Passage
from rag_vqa.kb.store import PassageStore


def passages():
    out = []
    for i in range(30):
        image = None
        if i % 3 == 0:
            image = f"https://img.example.org/{i}.png" if i % 2 else f"pics/{i}.jpg"
        out.append(Passage(f"p{i}", "" if i % 4 == 0 else "word " * i, article_id=f"a{i % 7}",
                           image=image))
    out.append(Passage("escape", "x", article_id="a0", image="link.jpg"))
    return out


def test_counts_and_lengths_match_a_reference(tmp_path):
    items = passages()
    root = tmp_path / "images"
    (root / "pics").mkdir(parents=True)
    for p in items[:12]:  # some files exist: paths and fetched URLs
        if p.image and not p.image.startswith("http"):
            (root / p.image).write_bytes(b"x")
        elif p.image:
            target = root / url_to_relpath(p.image)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    store = PassageStore.create(tmp_path / "kb")
    store.add_many(items)
    stats = store.stats(image_root=root, check_images=True)
    store.close()

    with_image = [p for p in items if p.image]
    urls = [p for p in with_image if p.image.startswith("http")]
    lengths = np.array([len(p.text) for p in items])
    assert (stats.passages, stats.articles) == (len(items), len({p.article_id for p in items}))
    assert stats.with_text == sum(1 for p in items if p.text)
    assert stats.empty_text == sum(1 for p in items if not p.text)
    assert (stats.with_image, stats.url_images, stats.path_images) == \
        (len(with_image), len(urls), len(with_image) - len(urls))
    assert stats.text_length["p50"] == pytest.approx(np.percentile(lengths, 50))
    assert stats.text_length["p90"] == pytest.approx(np.percentile(lengths, 90))
    assert stats.text_length["max"] == lengths.max() and stats.text_length["min"] == 0
    assert stats.text_length["mean"] == pytest.approx(lengths.mean())
    present = sum(1 for p in items[:12] if p.image)
    assert stats.images_checked
    assert (stats.images_present, stats.images_refused) == (present, 1)
    assert stats.images_missing == len(with_image) - present - 1


def test_empty_store_and_missing_root(tmp_path):
    store = PassageStore.create(tmp_path / "kb")
    stats = store.stats()
    assert stats.passages == stats.articles == stats.with_image == 0
    assert stats.text_length is None and not stats.images_checked
    with pytest.raises(KBStoreError, match="no image root"):
        store.stats(check_images=True)
    store.close()
