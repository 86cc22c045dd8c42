"""The flag photo renderer: deterministic, varied, and with a held-out style for testing."""

import numpy as np

from rag_vqa.flag_photos import BACKGROUNDS, FRESH, TRAINING, render_photo
from rag_vqa.samples import FLAGS


def test_the_same_seed_gives_the_same_photo_and_another_seed_another():
    a, b = render_photo("japan", 3), render_photo("japan", 3)
    assert a.tobytes() == b.tobytes()
    assert render_photo("japan", 4).tobytes() != a.tobytes()
    assert render_photo("japan", 3, FRESH).tobytes() != a.tobytes()  # disjoint seed spaces


def test_photos_vary_in_size_and_look_and_keep_the_flag_visible():
    sizes = set()
    for i, country in enumerate(FLAGS):
        photo = render_photo(country, i, TRAINING)
        sizes.add(photo.size)
        assert photo.mode == "RGB" and photo.size in TRAINING.sizes
        # the flag's own colours make up a good part of the picture
        flag = np.asarray(photo, np.float32)
        assert flag.std() > 10
    assert len(sizes) > 1


def test_the_fresh_style_holds_out_backgrounds_sizes_and_seeds():
    assert set(FRESH.backgrounds) - set(TRAINING.backgrounds)
    assert not set(FRESH.sizes) & set(TRAINING.sizes)
    assert FRESH.namespace != TRAINING.namespace
    assert set(TRAINING.backgrounds) | set(FRESH.backgrounds) <= set(BACKGROUNDS)
    for i in range(4):
        assert render_photo("peru", i, FRESH).size in FRESH.sizes
