"""The contrastive loss against a plain reference written here, its gradients, and the
cross-process gather."""

import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from retriever.losses import (
    Temperature,
    contrastive_loss,
    gather_with_grad,
    label_ids,
    late_interaction_scores,
)


def unit(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def maxsim(q, d):
    return sum(max(float(q[i] @ d[j]) for j in range(d.shape[0])) for i in range(q.shape[0]))


def reference_loss(q, p, q_labels, p_labels, scale, negatives=None, n_labels=None,
                   symmetric=True):
    """InfoNCE with soft multi-positive targets, one row at a time."""
    cands = list(p) + (list(negatives) if negatives is not None else [])
    c_labels = list(p_labels) + (list(n_labels) if n_labels is not None else [])

    def direction(rows, row_labels, columns, column_labels):
        losses = []
        for r, lab in zip(rows, row_labels):
            logits = [scale * maxsim(*pair) for pair in [(r, c) if rows is q else (c, r)
                                                         for c in columns]]
            positives = [j for j, cl in enumerate(column_labels) if cl == lab]
            if not positives:
                continue
            top = max(logits)
            log_norm = top + math.log(sum(math.exp(x - top) for x in logits))
            losses.append(-sum((logits[j] - log_norm) / len(positives) for j in positives))
        return sum(losses) / len(losses)

    q2p = direction(q, q_labels, cands, c_labels)
    if not symmetric:
        return q2p
    return (q2p + direction(p, p_labels, list(q), list(q_labels))) / 2


def test_scores_are_maxsim():
    q, d = unit(3, 5, 8), unit(4, 6, 8, seed=1)
    scores = late_interaction_scores(q, d)
    for i in range(3):
        for j in range(4):
            assert abs(float(scores[i, j]) - maxsim(q[i], d[j])) < 1e-5


@pytest.mark.parametrize("symmetric", [True, False])
def test_loss_matches_the_reference_with_multi_positives_and_hard_negatives(symmetric):
    q, p, n = unit(5, 4, 8), unit(5, 4, 8, seed=1), unit(3, 4, 8, seed=2)
    q_labels = torch.tensor([0, 1, 1, 2, 3])          # queries 1 and 2 share an entity
    n_labels = torch.tensor([7, 3, 8])                 # the second negative is query 4's entity
    out = contrastive_loss(q, p, q_labels, q_labels.clone(), 2.5, n, n_labels,
                           symmetric=symmetric)
    expected = reference_loss(q, p, q_labels.tolist(), q_labels.tolist(), 2.5, n,
                              n_labels.tolist(), symmetric)
    assert abs(float(out.loss) - expected) < 1e-4
    plain = contrastive_loss(q, p, q_labels, q_labels.clone(), 2.5, symmetric=symmetric)
    assert abs(float(plain.loss) - reference_loss(q, p, q_labels.tolist(), q_labels.tolist(),
                                                  2.5, symmetric=symmetric)) < 1e-4
    assert 0.0 <= out.accuracy <= 1.0


def test_gradients_pass_gradcheck():
    q = unit(3, 2, 4, dtype=torch.float64).requires_grad_()
    p = unit(3, 2, 4, seed=1, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([0, 1, 1])

    def loss(q_, p_):
        return contrastive_loss(q_, p_, labels, labels, 3.0).loss

    assert torch.autograd.gradcheck(loss, (q, p), eps=1e-6, atol=1e-5)


def test_temperature_fixed_or_learned():
    fixed = Temperature(0.5)
    assert abs(float(fixed()) - 2.0) < 1e-6 and not fixed.log_scale.requires_grad
    learned = Temperature(0.5, learnable=True, min_value=0.1)
    assert learned.log_scale.requires_grad
    with torch.no_grad():
        learned.log_scale.fill_(10.0)
    assert abs(learned.value - 0.1) < 1e-6  # clamped at the minimum temperature
    with pytest.raises(ValueError):
        Temperature(0.0)


def test_labels_are_stable_ids():
    assert torch.equal(label_ids(["a", "b", "a"])[[0, 2]], label_ids(["a", "a"]))
    assert label_ids(["a"])[0] != label_ids(["b"])[0]
    assert gather_with_grad(torch.ones(2)).shape == (2,)  # no process group: unchanged


def _worker(rank, world, port, q, p, labels, result):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    half = q.shape[0] // world
    rows = slice(rank * half, (rank + 1) * half)
    q_local = q[rows].clone().requires_grad_()
    p_local = p[rows].clone().requires_grad_()
    out = contrastive_loss(gather_with_grad(q_local), gather_with_grad(p_local),
                           gather_with_grad(labels[rows]), gather_with_grad(labels[rows]), 2.0)
    out.loss.backward()
    result[rank] = (float(out.loss), q_local.grad.clone(), p_local.grad.clone())
    dist.destroy_process_group()


def test_gathered_loss_gives_each_process_its_share_of_the_full_gradient():
    q, p = unit(4, 3, 8), unit(4, 3, 8, seed=1)
    labels = torch.tensor([0, 1, 2, 1])
    q_full, p_full = q.clone().requires_grad_(), p.clone().requires_grad_()
    full = contrastive_loss(q_full, p_full, labels, labels, 2.0)
    full.loss.backward()
    manager = mp.Manager()
    result = manager.dict()
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, q, p, labels, result), nprocs=2, join=True)
    for rank in range(2):
        loss, q_grad, p_grad = result[rank]
        assert abs(loss - float(full.loss)) < 1e-5
        rows = slice(rank * 2, rank * 2 + 2)
        assert torch.allclose(q_grad, q_full.grad[rows], atol=1e-6)
        assert torch.allclose(p_grad, p_full.grad[rows], atol=1e-6)
