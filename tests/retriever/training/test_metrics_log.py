"""Training metrics: the JSONL file always, TensorBoard event files when asked and installed."""

import json

import pytest

from retriever.training.metrics_log import MetricsLogger


def test_jsonl_and_tensorboard_get_every_value(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path, ["jsonl", "tensorboard"])
    log.log(1, {"loss": 2.5, "lr": 1e-4})
    log.log(2, {"loss": 1.5, "recall@1": 0.25})
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 2.5, "lr": 1e-4},
                     {"step": 2, "loss": 1.5, "recall@1": 0.25}]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.5), (2, 1.5)]
    assert [e.step for e in events.Scalars("recall@1")] == [2]


def test_disabled_logger_writes_nothing(tmp_path):
    log = MetricsLogger(tmp_path, ["jsonl", "tensorboard"], enabled=False)
    log.log(1, {"loss": 1.0})
    log.close()
    assert not (tmp_path / "metrics.jsonl").exists()
    assert not (tmp_path / "tensorboard").exists()
