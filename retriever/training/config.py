"""Training settings: one dataclass, loadable from a TOML table or a dict, validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..dataconfig import from_mapping

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    output_dir: str = "ret-training"
    max_steps: int = 1000                 # optimiser steps
    batch_size: int = 32                  # per process, per micro-batch
    grad_accumulation: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0             # cosine decays to learning_rate * min_lr_ratio
    max_grad_norm: float | None = 1.0
    temperature: float = 1.0            # MaxSim sums span ~[0, 32]: no extra sharpening
    learn_temperature: bool = False
    symmetric: bool = True
    hard_negatives_per_query: int = 0
    mixed_precision: str = "no"           # "no", "bf16" or "fp16"
    cache_features: bool = False          # frozen backbones: compute their states once
    unfreeze_last_blocks: int = 0         # also train the last N blocks of each backbone
    # only parameters whose names match one of these globs train (fnmatch, e.g. "*text*");
    # empty: everything the model's frozen flags leave trainable
    train_only: list[str] = field(default_factory=list)
    eval_every: int = 0                   # 0: only at the end (when validation data is given)
    eval_ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    save_every: int = 0                   # 0: only at the end
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    report_to: list[str] = field(default_factory=lambda: ["jsonl"])  # + tensorboard, wandb

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "grad_accumulation", "log_every",
                    "keep_checkpoints")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1")
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise ValueError("train.learning_rate and train.temperature must be positive")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError("train.mixed_precision must be no, bf16 or fp16")
        if self.cache_features and self.unfreeze_last_blocks:
            raise ValueError("cache_features needs frozen backbones (unfreeze_last_blocks = 0)")
        if self.cache_features and self.train_only:
            raise ValueError("cache_features and train_only do not mix: train_only may train a "
                             "backbone, whose states the cache would freeze")
        unknown = set(self.report_to) - {"jsonl", "tensorboard", "wandb"}
        if unknown:
            raise ValueError(f"train.report_to: unknown {sorted(unknown)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TrainConfig:
        return from_mapping(cls, values, what="training option")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
