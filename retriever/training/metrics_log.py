"""Training metrics: always a JSONL file; TensorBoard and Weights & Biases when installed and
asked for. Only the main process writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["MetricsLogger"]

logger = logging.getLogger(__name__)


class MetricsLogger:
    def __init__(self, folder: Path, report_to: list[str], enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = folder / "metrics.jsonl"
        self._tensorboard = self._wandb = None
        if not enabled:
            return
        if "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:
                logger.warning("report_to tensorboard: the tensorboard package is not installed")
        if "wandb" in report_to:
            try:
                import wandb

                self._wandb = wandb.init(project="rag-vqa", dir=str(folder))
            except ImportError:
                logger.warning("report_to wandb: the wandb package is not installed")

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled or not values:
            return
        logger.info("step %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        if self._tensorboard is not None:
            for key, value in values.items():
                self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
