"""The one encoding loop: any source of prepared batches, any sink."""

import torch

from retriever.encoding import encode_batches, encode_items, feature_shape, length_batches


def test_length_batches_put_the_longest_first_and_keep_ties_in_order():
    assert length_batches([3, 9, 3, 9, 1], 2) == [[1, 3], [0, 2], [4]]
    assert length_batches([], 4) == []


def test_a_plain_generator_and_a_sink_give_what_encode_items_gives(tiny_retriever):
    encoder = tiny_retriever.document_encoder
    processor = tiny_retriever.processor("document")
    texts = ["a short passage", "", "a much longer passage about flags and their colours", "x"]
    expected = encode_items(encoder, processor, texts, None, batch_size=3)
    source = ((rows, processor([texts[i] for i in rows], [None] * len(rows)))
              for rows in ([0, 1], [2], [3]))  # any batching: padding never changes features
    got: dict[int, torch.Tensor] = {}

    def sink(rows, features):
        assert features.dtype == torch.float32 and features.device.type == "cpu"
        assert not torch.is_inference_mode_enabled() or features.is_inference()
        got.update(zip(rows, features))

    was_training = encoder.training
    encode_batches(encoder, source, sink)
    assert encoder.training == was_training
    assert sorted(got) == [0, 1, 2, 3]
    assert expected.shape == (4, *feature_shape(encoder))
    for i in range(4):
        torch.testing.assert_close(got[i], expected[i], atol=1e-5, rtol=1e-4)
