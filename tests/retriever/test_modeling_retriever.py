"""The two-tower API: encode_queries / encode_documents / forward."""

import json

import numpy as np
import pytest
import torch

from retriever import DEFAULT_QUERY_INSTRUCTION, ReTRetriever
from retriever.tiny import build_tiny_retriever
from tests.helpers import random_image

TEXTS = [
    "a long passage " + "about the history of the cathedral and its towers " * 6,
    "",
    "short",
    "a medium length passage about a bird with red feathers",
    "x",
]


def images_for(n, tmp_path):
    out = []
    for i in range(n):
        if i % 3 == 2:
            out.append(None)
        elif i % 3 == 1:
            path = tmp_path / f"img{i}.png"
            random_image(i).save(path)
            out.append(path)
        else:
            out.append(random_image(i))
    return out


def test_encode_documents_shapes_norms_and_types(tiny_retriever, tmp_path):
    feats = tiny_retriever.encode_documents(TEXTS, images_for(len(TEXTS), tmp_path))
    assert feats.shape == (5, 32, 128) and feats.dtype == torch.float32
    assert feats.device.type == "cpu"
    assert torch.allclose(feats.norm(dim=-1), torch.ones(5, 32), atol=1e-5)
    assert tiny_retriever.encode_documents([], []).shape == (0, 32, 128)


def test_one_alone_equals_inside_a_padded_batch(tiny_retriever, tmp_path):
    images = images_for(len(TEXTS), tmp_path)
    together = tiny_retriever.encode_documents(TEXTS, images, batch_size=5)
    for i in range(len(TEXTS)):
        alone = tiny_retriever.encode_documents([TEXTS[i]], [images[i]])
        assert (alone[0] - together[i]).abs().max() <= 1e-5, i
    odd = tiny_retriever.encode_documents(TEXTS, images, batch_size=2)
    assert (odd - together).abs().max() <= 1e-5
    queries = tiny_retriever.encode_queries(TEXTS, images, batch_size=3)
    for i in (0, 2):
        alone = tiny_retriever.encode_queries([TEXTS[i]], [images[i]])
        assert (alone[0] - queries[i]).abs().max() <= 1e-5


def test_query_and_document_towers_differ(tiny_retriever):
    q = tiny_retriever.encode_queries(["the same"], [random_image(0)])
    d = tiny_retriever.encode_documents(["the same"], [random_image(0)])
    assert not torch.allclose(q, d)


def test_instruction_is_prefixed_as_in_the_reference(tiny_retriever):
    plain = tiny_retriever.encode_queries([f"{DEFAULT_QUERY_INSTRUCTION} what is it?",
                                           DEFAULT_QUERY_INSTRUCTION], None)
    prefixed = tiny_retriever.encode_queries(["what is it?", ""], None,
                                             instruction=DEFAULT_QUERY_INSTRUCTION)
    assert torch.equal(plain, prefixed)


def test_input_errors(tiny_retriever):
    with pytest.raises(ValueError, match="2 texts but 1 images"):
        tiny_retriever.encode_documents(["a", "b"], [None])
    with pytest.raises(TypeError, match="not a single string"):
        tiny_retriever.encode_documents("a text", None)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_retriever.encode_documents(["a"], None, batch_size=0)
    bare = ReTRetriever(tiny_retriever.config)
    with pytest.raises(RuntimeError, match="no processor"):
        bare.encode_queries(["a"], None)


def test_progress_bar_for_long_inputs(tiny_retriever, capsys):
    tiny_retriever.encode_documents(["t"] * 12, None, batch_size=2, show_progress=True)
    assert "encoding documents" in capsys.readouterr().err
    tiny_retriever.encode_documents(["t"] * 4, None, batch_size=2)
    assert "encoding documents" not in capsys.readouterr().err


def test_encode_restores_training_mode():
    model = build_tiny_retriever(seed=0).train()
    model.encode_documents(["a"], None)
    assert model.document_encoder.ret_cell.training
    assert not model.document_encoder.text_model.training  # frozen backbone stays in eval


class CallCounter:
    def __init__(self, *modules):
        self.calls = 0
        self.handles = [m.register_forward_hook(self) for m in modules]

    def __call__(self, *args):
        self.calls += 1


def test_shared_backbones_run_once_per_batch(tiny_retriever):
    model = tiny_retriever
    assert model.query_encoder.text_model is model.document_encoder.text_model
    text = CallCounter(model.query_encoder.text_model)
    vision = CallCounter(model.query_encoder.vision_model)
    proc = model.query_processor
    q = proc(["what is this?", "where?"], [random_image(0), None])
    p = proc(["a much longer passage with many more tokens in it", "", "third"],
             [random_image(1), random_image(2), None])
    with torch.no_grad():
        out = model(q, p)
    assert (text.calls, vision.calls) == (1, 1)
    assert out.query_features.shape == (2, 32, 128) and out.passage_features.shape == (3, 32, 128)
    with torch.no_grad():
        separate_q = model.query_encoder(**q.as_kwargs())
        separate_p = model.document_encoder(**p.as_kwargs())
    assert (out.query_features - separate_q).abs().max() <= 1e-5
    assert (out.passage_features - separate_p).abs().max() <= 1e-5
    text.calls = vision.calls = 0
    model.encode_documents(["a", "b", "c"], [None, random_image(3), None], batch_size=8)
    assert (text.calls, vision.calls) == (1, 1)


def test_forward_trains_heads_only():
    model = build_tiny_retriever(seed=1).train()
    proc = model.query_processor
    q = proc(["q1", "q2"], [random_image(0), None])
    p = proc(["p1", "p2"], [None, random_image(1)])
    out = model(q, p)
    loss = torch.einsum("qid,pjd->qpij", out.query_features, out.passage_features).amax(-1).sum()
    loss.backward()
    assert model.query_encoder.ret_cell.query_hidden_states.grad is not None
    assert model.document_encoder.late_proj.weight.grad is not None
    assert all(p.grad is None for p in model.query_encoder.text_model.parameters())


def test_reference_checkpoint_features_match_the_authors_implementation(fixtures_dir):
    """Golden features computed by the authors' code (transformers 4.45) on its own checkpoint."""
    folder = fixtures_dir / "ret_reference_tiny"
    model = ReTRetriever.from_pretrained(folder)
    inputs = json.loads((folder / "inputs.json").read_text())

    def image(name):
        return folder / name if name else None

    queries = model.encode_queries([t for t, _ in inputs["queries"]],
                                   [image(i) for _, i in inputs["queries"]])
    docs = model.encode_documents([t for t, _ in inputs["docs"]],
                                  [image(i) for _, i in inputs["docs"]], batch_size=3)
    assert np.abs(queries.numpy() - np.load(folder / "ref_query.npy")).max() <= 1e-5
    assert np.abs(docs.numpy() - np.load(folder / "ref_docs.npy")).max() <= 1e-5
