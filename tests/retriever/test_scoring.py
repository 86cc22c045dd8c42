import torch

from retriever.scoring import maxsim


def test_maxsim_matches_a_direct_loop():
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 32, 16, generator=gen), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(7, 32, 16, generator=gen), dim=-1)
    expected = torch.zeros(3, 7)
    for a in range(3):
        for b in range(7):
            expected[a, b] = sum(max(float(q[a, i] @ d[b, j]) for j in range(32))
                                 for i in range(32))
    assert torch.allclose(maxsim(q, d, chunk_size=2), expected, atol=1e-4)
    assert torch.allclose(maxsim(q, d.half()), expected, atol=1e-2)
