"""Training and fine-tuning ReT (the authors released no training code).

    from retriever.training import ReTTrainer, TrainConfig, JsonlPassages, load_train_queries
"""

from .config import TrainConfig
from .data import (
                   JsonlPassages,
                   PassageLookup,
                   ReTCollator,
                   RetrievalPairs,
                   TrainingDataError,
                   TrainPassage,
                   TrainQuery,
                   load_train_queries,
                   read_jsonl_rows,
)
from .trainer import ReTTrainer, TrainResult, latest_checkpoint
from .validation import recall_at_k

__all__ = ["JsonlPassages", "PassageLookup", "ReTCollator", "ReTTrainer", "RetrievalPairs",
           "TrainConfig", "TrainPassage", "TrainQuery", "TrainResult", "TrainingDataError",
           "latest_checkpoint", "load_train_queries", "read_jsonl_rows", "recall_at_k"]
