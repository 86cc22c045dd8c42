"""Training a tiny ReT on a synthetic multimodal task: it learns, it resumes exactly, and its
checkpoints are released-layout models."""

import dataclasses
import json

import pytest
import torch

from retriever import ReTRetriever
from retriever.tiny import build_tiny_retriever, tiny_retriever_config
from retriever.training import (
    JsonlPassages,
    ReTTrainer,
    TrainConfig,
    TrainingDataError,
    latest_checkpoint,
    load_train_queries,
    recall_at_k,
)
from retriever.training.synthetic import write_synthetic_task


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one process-wide state (mixed precision included): a training run in a
    real process is alone, so give each test a fresh one the way accelerate's own tests do."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    paths = write_synthetic_task(tmp_path_factory.mktemp("task"))
    passages = JsonlPassages(paths["passages"], paths["images"])
    return (load_train_queries(paths["train"], paths["images"]), passages,
            load_train_queries(paths["val"], paths["images"]), paths)


def config(tmp_path, **kwargs):
    values = dict(output_dir=str(tmp_path / "out"), max_steps=20, batch_size=16,
                  learning_rate=1e-3, warmup_steps=5, log_every=5)
    values.update(kwargs)
    return TrainConfig(**values)


def test_it_learns_to_use_both_modalities(tmp_path, task):
    train, passages, val, _ = task
    model = build_tiny_retriever(seed=0)
    before = recall_at_k(model, val, passages, ks=(1,))["recall@1"]
    assert before < 0.2  # chance is 1/64
    result = ReTTrainer(model, config(tmp_path, max_steps=150, batch_size=32, warmup_steps=20,
                                      cache_features=True, eval_every=150),
                        train, passages, val).train()
    assert result.validation["recall@1"] >= 0.9, result
    # neither modality alone identifies the entity (8 colours x 8 words)
    image_only = [dataclasses.replace(q, text="") for q in val]
    assert recall_at_k(model, image_only, passages, ks=(1,))["recall@1"] < 0.5
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert any("recall@1" in json.loads(line) for line in lines)


def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path, task):
    train, passages, _, _ = task
    straight = build_tiny_retriever(seed=1)
    ReTTrainer(straight, config(tmp_path / "a", max_steps=12), train, passages).train()

    first = build_tiny_retriever(seed=1)
    paused = ReTTrainer(first, config(tmp_path / "b", max_steps=12), train, passages)
    assert paused.train(stop_at=6).steps == 6
    resumed = build_tiny_retriever(seed=99)  # whatever it starts from, the checkpoint wins
    trainer = ReTTrainer(resumed, config(tmp_path / "b", max_steps=12), train, passages)
    assert trainer.resume() and trainer.step == 6
    trainer.train()
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_are_released_layout_models(tmp_path, task):
    train, passages, _, _ = task
    model = build_tiny_retriever(seed=2)
    result = ReTTrainer(model, config(tmp_path, max_steps=4, save_every=2, keep_checkpoints=1),
                        train, passages).train()
    assert latest_checkpoint(tmp_path / "out").name == "checkpoint-0000004"
    assert len(list((tmp_path / "out").glob("checkpoint-*"))) == 1
    loaded = ReTRetriever.from_pretrained(f"{result.checkpoint}/model")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_backbones_stay_frozen_unless_asked(tmp_path, task):
    train, passages, _, _ = task
    model = build_tiny_retriever(seed=3)
    frozen = {k: v.clone() for k, v in model.query_encoder.text_model.state_dict().items()}
    cell = model.query_encoder.ret_cell.query_hidden_states.detach().clone()
    trainer = ReTTrainer(model, config(tmp_path / "a", max_steps=3), train, passages)
    model.train()  # what the loop does: frozen backbones stay in eval mode (no dropout)
    assert model.query_encoder.ret_cell.training
    assert not model.query_encoder.text_model.training
    assert not model.document_encoder.vision_model.training
    trainer.train()
    assert not model.training  # handed back ready for inference
    assert all(torch.equal(frozen[k], v)
               for k, v in model.query_encoder.text_model.state_dict().items())
    assert not torch.equal(cell, model.query_encoder.ret_cell.query_hidden_states)
    model = build_tiny_retriever(seed=3)
    last = model.query_encoder.text_model.encoder.layers[-1].mlp.fc1.weight.detach().clone()
    first = model.query_encoder.text_model.encoder.layers[0].mlp.fc1.weight.detach().clone()
    ReTTrainer(model, config(tmp_path / "b", max_steps=3, unfreeze_last_blocks=1), train,
               passages).train()
    assert not torch.equal(last, model.query_encoder.text_model.encoder.layers[-1].mlp.fc1.weight)
    assert torch.equal(first, model.query_encoder.text_model.encoder.layers[0].mlp.fc1.weight)


def test_train_only_moves_just_the_matching_parameters(tmp_path, task):
    train, passages, _, _ = task
    model = build_tiny_retriever(seed=5)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ReTTrainer(model, config(tmp_path, max_steps=3, train_only=["*text_xa*", "*late_proj*"]),
               train, passages).train()
    moved = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    wanted = {name for name in before if "text_xa" in name or "late_proj" in name}
    assert moved and moved <= wanted
    assert any("query_encoder" in name for name in moved)
    assert any("document_encoder" in name for name in moved)
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        ReTTrainer(build_tiny_retriever(seed=5),
                   config(tmp_path / "b", max_steps=1, train_only=["*nothing*"]),
                   train, passages)
    with pytest.raises(ValueError, match="train_only do not mix"):
        TrainConfig(cache_features=True, train_only=["*text*"])


def test_hard_negatives_mixed_precision_and_learned_temperature(tmp_path, task):
    train, passages, _, paths = task
    negatives = {q.data_id: [f"e{(int(q.positives[0][1]) + 1) % 8}{q.positives[0][2]}"]
                 for q in train}
    train_hn = load_train_queries(paths["train"], paths["images"], hard_negatives=negatives)
    assert train_hn[0].hard_negatives
    model = build_tiny_retriever(seed=4)
    result = ReTTrainer(model, config(tmp_path, max_steps=3, hard_negatives_per_query=1,
                                      mixed_precision="bf16", learn_temperature=True),
                        train_hn, passages).train()
    assert torch.isfinite(torch.tensor(result.final_loss))


def test_bad_configuration_and_data(tmp_path, task):
    with pytest.raises(ValueError, match="cache_features needs frozen backbones"):
        TrainConfig(cache_features=True, unfreeze_last_blocks=2)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"max_step": 3})
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"data_id": "a", "question": "q"}\n')
    with pytest.raises(TrainingDataError, match="q.jsonl:1: missing field 'passage_id'"):
        load_train_queries(bad)
    train, passages, _, _ = task
    with pytest.raises(ValueError, match="cannot fill one batch"):
        ReTTrainer(build_tiny_retriever(), config(tmp_path, batch_size=4096), train, passages)


def test_gradient_accumulation_consumes_micro_batches_per_step(tmp_path, task):
    train, passages, _, _ = task
    trainer = ReTTrainer(build_tiny_retriever(seed=5),
                         config(tmp_path, max_steps=3, batch_size=8, grad_accumulation=2),
                         train, passages)
    result = trainer.train()
    assert result.steps == 3 and trainer.position == 6
    assert trainer.scheduler.last_epoch == 3  # one scheduler step per optimiser step


def test_cached_features_train_like_the_full_forward_with_hard_negatives(tmp_path, task):
    """Negatives are cached under their passage ids: every micro-batch gets its own states and
    the cache never outgrows the data."""
    train, passages, _, paths = task
    negatives = {q.data_id: [f"e{(int(q.positives[0][1]) + 1) % 8}{q.positives[0][2]}",
                             f"e{q.positives[0][1]}{(int(q.positives[0][2]) + 3) % 8}"]
                 for q in train}
    train_hn = load_train_queries(paths["train"], paths["images"], hard_negatives=negatives)
    tiny = tiny_retriever_config()
    for tower in (tiny.query_config, tiny.passage_config):  # both paths draw dropout differently
        tower.dropout_p = tower.attention_dropout = 0.0
    losses = []
    for cached in (False, True):
        out = tmp_path / str(cached)
        trainer = ReTTrainer(build_tiny_retriever(seed=6, config=tiny),
                             config(out, max_steps=3, batch_size=8, grad_accumulation=2,
                                    hard_negatives_per_query=2, cache_features=cached,
                                    log_every=1),
                             train_hn, passages)
        trainer.train()
        losses.append([json.loads(line)["loss"] for line in
                       (out / "out" / "metrics.jsonl").read_text().splitlines()])
        if cached:
            assert 0 < len(trainer.cache) <= len(train_hn) + 64
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)


def test_a_warm_up_longer_than_the_run_is_warned_about(tmp_path, task, caplog):
    train, passages, _, _ = task
    with caplog.at_level("WARNING", logger="retriever.training.trainer"):
        ReTTrainer(build_tiny_retriever(), config(tmp_path, max_steps=20, warmup_steps=50),
                   train, passages)
    assert "warm-up (50 steps) is not shorter than max_steps (20)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="retriever.training.trainer"):
        ReTTrainer(build_tiny_retriever(), config(tmp_path / "b"), train, passages)
    assert "warm-up" not in caplog.text
