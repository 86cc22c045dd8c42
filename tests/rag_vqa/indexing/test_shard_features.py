"""ShardFeatures: a shard filled batch by batch in any order (as Ray workers return them) is
written once, complete, and never takes a row twice."""

import numpy as np
import pytest

from rag_vqa.indexing.encode import ShardFeatures
from rag_vqa.indexing.shards import ShardSet


def test_batches_in_any_order_make_the_shard_the_local_loop_makes(tmp_path):
    shards = ShardSet(tmp_path, total=10, shard_size=6)
    features = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    shard = ShardFeatures(1, 6, 10, (2, 3))
    shard.add([8, 9], features[2:], ["ok", "none"], [], seconds=0.5)
    assert not shard.complete
    with pytest.raises(RuntimeError, match="incomplete: 2 rows missing"):
        shard.write(shards)
    shard.add([7, 6], features[[1, 0]],
              ["broken", "ok"], [{"status": "broken", "passage_id": "P7", "reason": "bad"}], 0.25)
    info = shard.write(shards)
    assert (info.start, info.stop, info.images, info.seconds) == (6, 10, {"ok": 2, "none": 1,
                                                                         "broken": 1}, 0.75)
    assert np.array_equal(np.load(shards.array_path(1)), features.astype(np.float16))
    assert shards.finished(1) == info


@pytest.mark.parametrize("rows", [[0, 1], [2, 2], [5, 6], [-1]])
def test_a_row_arriving_twice_or_outside_the_shard_is_refused(rows):
    shard = ShardFeatures(0, 0, 6, (1, 1))
    shard.add([0, 1], np.zeros((2, 1, 1)), ["none"] * 2, [])
    with pytest.raises(RuntimeError, match="twice or out of range"):
        shard.add(rows, np.zeros((len(rows), 1, 1)), ["none"] * len(rows), [])
