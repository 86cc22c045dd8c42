import numpy as np
import pytest
import torch

from retriever.index.codec import ResidualCodec, pack_codes, unpack_codes


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_pack_unpack_round_trip(nbits):
    rng = np.random.default_rng(nbits)
    codes = rng.integers(0, 1 << nbits, size=(50, 128)).astype(np.uint8)
    packed = pack_codes(codes, nbits)
    assert packed.shape == (50, 128 * nbits // 8)
    assert np.array_equal(unpack_codes(torch.from_numpy(packed), nbits).numpy(), codes)


@pytest.mark.parametrize("nbits, tolerance", [(2, 0.6), (4, 0.16), (8, 0.012)])
def test_decode_error_shrinks_with_bits(nbits, tolerance):
    rng = np.random.default_rng(0)
    residuals = (rng.standard_normal((4000, 128)) * 0.1).astype(np.float32)
    codec = ResidualCodec.fit(residuals, nbits)
    decoded = codec.decode(torch.from_numpy(codec.encode(residuals))).numpy()
    inside = (residuals >= codec.lo) & (residuals <= codec.lo + codec.step * (1 << nbits))
    # inside the grid the error is at most half a bucket
    assert np.all(np.abs(decoded - residuals)[inside] <= codec.step.max() / 2 + 1e-6)
    relative = np.linalg.norm(decoded - residuals) / np.linalg.norm(residuals)
    assert relative < tolerance


@pytest.mark.parametrize("nbits", [2, 4, 8])
def test_quantise_counts_the_values_the_grid_clips(nbits):
    rng = np.random.default_rng(nbits + 10)
    residuals = (rng.standard_normal((2000, 64)) * 0.1).astype(np.float32)
    codec = ResidualCodec.fit(residuals, nbits)
    packed, clipped = codec.quantise(residuals)
    hi = codec.lo + codec.step * (1 << nbits)
    assert clipped == int(np.sum((residuals < codec.lo) | (residuals >= hi))) > 0
    assert np.array_equal(packed, codec.encode(residuals))


def test_query_terms_give_the_dot_product_with_decoded_residuals():
    rng = np.random.default_rng(1)
    residuals = (rng.standard_normal((300, 128)) * 0.1).astype(np.float32)
    codec = ResidualCodec.fit(residuals, 4)
    packed = torch.from_numpy(codec.encode(residuals))
    queries = torch.from_numpy(rng.standard_normal((5, 128)).astype(np.float32))
    offsets, weights = codec.query_terms(queries)
    levels = unpack_codes(packed, 4).float()
    via_codes = levels @ weights.T + offsets
    direct = codec.decode(packed) @ queries.T
    assert torch.allclose(via_codes, direct, atol=1e-4)


def test_bad_nbits():
    with pytest.raises(ValueError, match="nbits"):
        ResidualCodec.fit(np.zeros((10, 8), np.float32), 3)
