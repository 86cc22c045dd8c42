"""BEM: the official input layout and the 0.5 threshold, on a tiny BERT built in the test (no
download: the model and its WordPiece vocabulary are written to a temporary folder)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from eval.metrics import BEMLoadError, BEMScorer, EVQAReference, score_evqa  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "what", "is", "the", "color", "?",
         "red", "blue", "cat", "##s", "and", ","]
ID = {w: i for i, w in enumerate(VOCAB)}


def build_tiny_bem(folder, bias=(0.0, 0.0), type_vocab_size=3):
    """A 1-layer BERT classifier whose logits are exactly ``bias`` (zero classifier weight)."""
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=512, type_vocab_size=type_vocab_size,
        num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    transformers.BertTokenizer(vocab=dict(ID), do_lower_case=True).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_bem(tmp_path_factory):
    return build_tiny_bem(tmp_path_factory.mktemp("bem"))


def test_encode_follows_the_official_layout(tiny_bem):
    scorer = BEMScorer(tiny_bem)
    enc = scorer.encode(question="What is the color?", reference="red", candidate="Red cats")
    cand = [ID["red"], ID["cat"], ID["##s"]]          # uncased wordpieces
    ref = [ID["red"]]
    question = [ID[w] for w in ("what", "is", "the", "color", "?")]
    ids = [ID["[CLS]"], *cand, ID["[SEP]"], *ref, ID["[SEP]"], *question, ID["[SEP]"]]
    types = [0] * (len(cand) + 2) + [1] * (len(ref) + 1) + [2] * (len(question) + 1)
    pad = 512 - len(ids)
    assert enc["input_ids"].tolist() == [ids + [0] * pad]
    assert enc["token_type_ids"].tolist() == [types + [0] * pad]
    assert enc["attention_mask"].tolist() == [[1] * len(ids) + [0] * pad]


def test_batch_padding_options(tiny_bem):
    examples = [("what is the color?", "red", "blue"), ("what?", "red and blue", "red")]
    full = BEMScorer(tiny_bem).encode_batch(examples)
    short = BEMScorer(tiny_bem, pad_to_max_length=False).encode_batch(examples)
    assert full["input_ids"].shape == (2, 512)
    assert short["input_ids"].shape == (2, 11)          # 4 specials + 1 + 1 + 5
    assert torch.equal(full["input_ids"][:, :11], short["input_ids"])


def test_long_inputs_are_truncated_with_a_warning(tiny_bem, caplog):
    scorer = BEMScorer(tiny_bem)
    with caplog.at_level(logging.WARNING):
        enc = scorer.encode("what is the color?", "red", "blue " * 600)
    assert enc["input_ids"].shape == (1, 512)
    assert int(enc["attention_mask"].sum()) == 512
    assert enc["input_ids"][0, -1].item() == ID["[SEP]"]
    # question and reference survive; the long candidate is cut
    assert enc["token_type_ids"][0].tolist().count(2) == 6
    assert "truncated" in caplog.text


@pytest.mark.parametrize("bias, expected", [((0.0, 0.0), True),       # softmax[1] = 0.5 exactly
                                            ((0.0, -1e-3), False),    # just below 0.5
                                            ((0.0, 3.0), True), ((2.0, 0.0), False)])
def test_threshold_at_one_half(tmp_path, bias, expected):
    scorer = BEMScorer(build_tiny_bem(tmp_path, bias=bias))
    p = scorer.probability("what is the color?", "red", "blue")
    assert p == pytest.approx(torch.softmax(torch.tensor(bias), -1)[1].item(), abs=1e-6)
    assert scorer.equivalent("what is the color?", "red", "blue") is expected
    assert scorer.equivalent_batch([("what?", "red", "blue")] * 3) == [expected] * 3


def test_score_evqa_with_bem_scorer(tmp_path):
    refs = {"0": EVQAReference("0", "what is the color?", ["red"], "automatic"),
            "1": EVQAReference("1", "what is the color?", ["blue"], "templated")}
    preds = [{"data_id": "0", "prediction": "crimson"}, {"data_id": "1", "prediction": "blue"}]
    yes = BEMScorer(build_tiny_bem(tmp_path / "yes", bias=(0.0, 1.0)), batch_size=1)
    no = BEMScorer(build_tiny_bem(tmp_path / "no", bias=(1.0, 0.0)))
    assert score_evqa(preds, refs, bem=yes).all.accuracy == 100.0
    result = score_evqa(preds, refs, bem=no)
    assert result.all.accuracy == 50.0
    assert result.method == f"EM+BEM ({tmp_path / 'no'})"


def test_load_errors_are_clear_and_lazy(tmp_path):
    scorer = BEMScorer(str(tmp_path / "missing-model"))     # nothing is loaded yet
    with pytest.raises(BEMLoadError, match="cannot load the BEM model"):
        scorer.probability("q", "a", "b")
    with pytest.raises(BEMLoadError, match="needs 3"):
        BEMScorer(build_tiny_bem(tmp_path / "two", type_vocab_size=2)).encode("q", "a", "b")
    assert issubclass(BEMLoadError, ValueError)


def test_import_loads_no_model_library():
    code = ("import sys, eval.metrics, eval.metrics.bem, eval.score_cli; "
            "print('transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]
