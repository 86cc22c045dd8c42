"""Training or fine-tuning ReT with the contrastive late-interaction loss.

Frozen backbones by default (kept in eval mode, optionally with cached features); the cells,
adapters and projections of both towers train (plus, optionally, the last backbone blocks).
AdamW with linear warm-up and cosine decay, gradient accumulation, mixed precision and gradient
clipping through ``accelerate`` (one or many GPUs). Checkpoints hold the model in the released
layout (``ReTRetriever.save_pretrained``) plus optimiser, scheduler, RNG and data position, so
an interrupted run resumes to exactly the result of an uninterrupted one.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..fileio import atomic_write_text, replace_folder
from ..losses import Temperature, contrastive_loss, gather_with_grad
from ..modeling_retriever import ReTRetriever
from .config import TrainConfig
from .data import PassageLookup, ReTCollator, RetrievalPairs, TrainBatch, TrainQuery
from .features import FeatureCache
from .metrics_log import MetricsLogger
from .validation import recall_at_k

__all__ = ["ReTTrainer", "TrainResult", "latest_checkpoint"]

logger = logging.getLogger(__name__)

_DONE = "checkpoint.json"


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    validation: dict[str, float]
    checkpoint: str
    seconds: float


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint whose writing finished (its checkpoint.json exists)."""
    done = [p.parent for p in Path(output_dir).glob(f"checkpoint-*/{_DONE}")]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def _lr_lambda(config: TrainConfig):
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / max(1, config.warmup_steps)
        progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine
    return factor


class ReTTrainer:
    def __init__(self, model: ReTRetriever, config: TrainConfig,
                 train_queries: Sequence[TrainQuery], passages: PassageLookup,
                 val_queries: Sequence[TrainQuery] | None = None,
                 val_passage_ids: Sequence[str] | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.config = config
        if config.warmup_steps >= config.max_steps:
            logger.warning("warm-up (%d steps) is not shorter than max_steps (%d): the learning "
                           "rate never reaches its peak nor decays; lower --warmup-steps (e.g. "
                           "to %d)", config.warmup_steps, config.max_steps,
                           max(0, config.max_steps // 10))
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision)
        # dropout in the cells draws from these generators: seed them so runs repeat exactly
        set_seed(config.seed, device_specific=True)
        self.model = model
        self._set_trainable(model)
        self.temperature = Temperature(config.temperature, config.learn_temperature).to(
            self.accelerator.device)
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for p in self.temperature.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(config))
        # the scheduler stays ours: accelerate's wrapper would step it once per process
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.dataset = RetrievalPairs(train_queries, passages, config.hard_negatives_per_query,
                                      config.seed)
        if len(self.dataset) < config.batch_size * self.accelerator.num_processes:
            raise ValueError(f"{len(self.dataset)} training queries cannot fill one batch of "
                             f"{config.batch_size} per process")
        base = self.accelerator.unwrap_model(self.model)
        self.collator = ReTCollator(base.query_processor, base.document_processor)
        self.passages = passages
        self.val_queries = list(val_queries or [])
        self.val_passage_ids = val_passage_ids
        self.cache = FeatureCache() if config.cache_features else None
        self.step, self.epoch, self.position = 0, 0, 0
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLogger(self.out, config.report_to,
                                     enabled=self.accelerator.is_main_process)

    # -- setup ----------------------------------------------------------------------------------
    def _set_trainable(self, model: ReTRetriever) -> None:
        for encoder in {id(e): e for e in (model.query_encoder, model.document_encoder)}.values():
            encoder.requires_grad_(True)
            encoder.freeze_backbones()
            # kept for loading only: no gradient ever reaches it (and DDP refuses unused ones)
            encoder.ret_cell.sa_ln.requires_grad_(False)
            if self.config.unfreeze_last_blocks:
                for backbone in (encoder.text_model, encoder.vision_model):
                    for layer in backbone.encoder.layers[-self.config.unfreeze_last_blocks:]:
                        layer.requires_grad_(True)
        if self.config.train_only:
            self._train_only(model, self.config.train_only)

    @staticmethod
    def _train_only(model: ReTRetriever, patterns: Sequence[str]) -> None:
        """Freeze every parameter whose name matches none of ``patterns`` (a fine-tune of one
        path, e.g. the text side, that must not move what the rest learned)."""
        matched = 0
        for name, param in model.named_parameters():
            keep = any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
            if not keep:
                param.requires_grad_(False)
            matched += keep and param.requires_grad
        if not matched:
            raise ValueError(f"train.train_only {list(patterns)} matches no trainable parameter "
                             "(names look like 'query_encoder.ret_cell.text_xa.in_proj_weight')")
        logger.info("train_only %s: %d trainable parameter tensors", list(patterns), matched)

    # -- data ----------------------------------------------------------------------------------
    def _batches(self) -> Iterator[TrainBatch]:
        """Endless batches: a seeded permutation per epoch, this process's share of it, from the
        saved position on (so a resumed run sees exactly the batches a straight run would)."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_step = self.config.batch_size * world
        while True:
            order = np.random.default_rng([self.config.seed, self.epoch]).permutation(
                len(self.dataset))
            usable = len(order) // per_step * per_step
            self.dataset.epoch = self.epoch
            mine = [int(i) for i in order[:usable][rank::world]]
            start = self.position * self.config.batch_size
            loader = DataLoader(Subset(self.dataset, mine[start:]),
                                batch_size=self.config.batch_size, shuffle=False,
                                collate_fn=self.collator, num_workers=self.config.num_workers,
                                # its own generator: creating a loader must not draw from the
                                # global one that dropout uses, or a resumed run would diverge
                                generator=torch.Generator().manual_seed(self.config.seed))
            for batch in loader:
                self.position += 1
                yield batch
            self.epoch, self.position = self.epoch + 1, 0

    # -- one step --------------------------------------------------------------------------------
    def _features(self,
                  batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Query, passage and hard-negative features (negatives ride with the passages)."""
        model = self.accelerator.unwrap_model(self.model)
        device = self.accelerator.device
        query, documents = batch.query.to(device, None), batch.passage.to(device, None)
        doc_ids = list(batch.passage_ids)
        if batch.negatives is not None:
            documents = type(documents).concat([documents, batch.negatives.to(device, None)])
            doc_ids += batch.negative_ids
        states = {}
        if self.cache is not None:  # frozen backbones: their states are keyed by item id
            states = {"query_states": self.cache.states(model.query_encoder, query,
                                                        batch.query_ids, "query"),
                      "passage_states": self.cache.states(model.document_encoder, documents,
                                                          doc_ids, "document")}
        # through the (possibly distributed) wrapper, so gradients sync
        out = self.model(query, documents, **states)
        d, n = out.passage_features, len(batch.passage_ids)
        return out.query_features, d[:n], d[n:] if batch.negatives is not None else None

    def _loss(self, batch: TrainBatch) -> tuple[torch.Tensor, float]:
        """The loss over the global batch: features of every process, gradients through the
        local ones (each process computes the same loss; DDP averages the gradients)."""
        with self.accelerator.autocast():
            q, p, n = self._features(batch)
        device = q.device
        negatives = labels = None
        if n is not None:  # hard-negative counts may differ between processes: keep them local
            negatives, labels = n.float(), batch.negative_labels.to(device)
        out = contrastive_loss(
            gather_with_grad(q.float()), gather_with_grad(p.float()),
            gather_with_grad(batch.query_labels.to(device)),
            gather_with_grad(batch.passage_labels.to(device)), self.temperature(),
            hard_negatives=negatives, hard_negative_labels=labels,
            symmetric=self.config.symmetric)
        return out.loss, out.accuracy

    # -- checkpoints ---------------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        """This process's generators (dropout draws from them; CUDA has its own)."""
        state: dict[str, Any] = {"torch": torch.get_rng_state(),
                                 "python": list(random.getstate()[1]),
                                 "python_pos": random.getstate()[2]}
        device = self.accelerator.device
        if device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(device)
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate((3, tuple(state["python"]), state["python_pos"]))
        if "cuda" in state and self.accelerator.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.accelerator.device)

    def save(self) -> Path:
        """A checkpoint folder, written under a temporary name and renamed when complete (so
        an interruption never leaves a half-written checkpoint that looks finished)."""
        folder = self.out / f"checkpoint-{self.step:07d}"
        tmp = self.out / f".tmp-checkpoint-{self.step:07d}"
        main = self.accelerator.is_main_process
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        torch.save(self._rng_state(), tmp / f"rng-{self.accelerator.process_index}.pt")
        self.accelerator.wait_for_everyone()
        if main:
            self.accelerator.unwrap_model(self.model).save_pretrained(tmp / "model")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save({"scheduler": self.scheduler.state_dict(),
                        "temperature": self.temperature.state_dict()}, tmp / "state.pt")
            atomic_write_text(tmp / _DONE, json.dumps(
                {"step": self.step, "epoch": self.epoch, "position": self.position,
                 "num_processes": self.accelerator.num_processes,
                 "config": self.config.to_dict()}, indent=2))
            replace_folder(tmp, folder)
            for old in sorted(self.out.glob("checkpoint-*"))[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return folder

    def resume(self, folder: str | Path | None = None) -> bool:
        """Continue from ``folder`` or the latest finished checkpoint; False if there is none."""
        folder = Path(folder) if folder else latest_checkpoint(self.out)
        if folder is None:
            return False
        info = json.loads((folder / _DONE).read_text())
        self.accelerator.unwrap_model(self.model).load_released_weights(folder / "model")
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        state = torch.load(folder / "state.pt", weights_only=True)
        self.scheduler.load_state_dict(state["scheduler"])
        self.temperature.load_state_dict(state["temperature"])
        rng = folder / f"rng-{self.accelerator.process_index}.pt"
        if rng.is_file():
            self._set_rng_state(torch.load(rng, weights_only=True))
        else:
            logger.warning("%s has no random state for process %d (saved by %s processes): "
                           "dropout will not repeat the interrupted run exactly", folder,
                           self.accelerator.process_index, info.get("num_processes"))
        if info.get("num_processes", 1) != self.accelerator.num_processes:
            logger.warning("resuming a run of %s processes with %d: the data order changes",
                           info.get("num_processes"), self.accelerator.num_processes)
        self.step, self.epoch, self.position = info["step"], info["epoch"], info["position"]
        logger.info("resumed from %s (step %d)", folder, self.step)
        return True

    # -- the loop --------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        if not self.val_queries:
            return {}
        model = self.accelerator.unwrap_model(self.model)
        return recall_at_k(model, self.val_queries, self.passages, self.val_passage_ids,
                           self.config.eval_ks, batch_size=self.config.batch_size)

    def train(self, stop_at: int | None = None) -> TrainResult:
        """Train to ``max_steps``; ``stop_at`` pauses earlier (saving a checkpoint to resume
        from: the schedule still spans max_steps)."""
        config, start = self.config, time.perf_counter()
        batches = self._batches()
        self.model.train()
        loss_value, validation = float("nan"), {}
        end = min(config.max_steps, stop_at or config.max_steps)
        bar = tqdm(total=config.max_steps, initial=self.step, desc="training", unit="step",
                   disable=not self.accelerator.is_main_process or None, dynamic_ncols=True)
        while self.step < end:
            total, accuracy = 0.0, 0.0
            # every process back-propagates the global loss through its own features only, so
            # the processes' gradients sum to the full one: undo DDP's averaging
            scale = self.accelerator.num_processes / config.grad_accumulation
            for _ in range(config.grad_accumulation):
                loss, acc = self._loss(next(batches))
                self.accelerator.backward(loss * scale)
                total += float(loss.detach()) / config.grad_accumulation
                accuracy += acc / config.grad_accumulation
            if self.accelerator.num_processes > 1:
                # the temperature is outside DDP and every process sees its full gradient:
                # take back the world-size factor applied above
                for p in self.temperature.parameters():
                    if p.grad is not None:
                        p.grad /= self.accelerator.num_processes
            if config.max_grad_norm:
                self.accelerator.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]],
                    config.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            loss_value = total
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                            refresh=False)
            if self.step % config.log_every == 0 or self.step == config.max_steps:
                self.metrics.log(self.step, {"loss": total, "batch_accuracy": accuracy,
                                             "lr": self.scheduler.get_last_lr()[0],
                                             "temperature": self.temperature.value})
            if config.eval_every and self.step % config.eval_every == 0:
                validation = self.validate()
                self.metrics.log(self.step, validation)
                self.model.train()
            if config.save_every and self.step % config.save_every == 0:
                self.save()
        bar.close()
        finished = self.step >= config.max_steps
        if finished and self.val_queries and not (config.eval_every
                                                  and self.step % config.eval_every == 0):
            validation = self.validate()
            self.metrics.log(self.step, validation)
        just_saved = config.save_every and self.step % config.save_every == 0 and self.step > 0
        folder = self.out / f"checkpoint-{self.step:07d}" if just_saved else self.save()
        self.metrics.close()
        self.model.eval()  # ready for inference, as from_pretrained returns it
        return TrainResult(self.step, loss_value, validation, str(folder),
                           round(time.perf_counter() - start, 3))
