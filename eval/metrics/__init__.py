"""Scorers that reproduce the official InfoSeek and Encyclopedic-VQA numbers (quirks included),
retrieval metrics (Recall@K, pseudo-recall, entity recall) and the optional BEM stage.

Importing this package loads neither torch nor transformers; BEM loads its model on first use.
"""

from .bem import DEFAULT_BEM_MODEL, BEMLoadError, BEMScorer
from .common import (
    Coverage,
    MetricsInputError,
    MissingPredictionsError,
    Prediction,
    load_predictions,
)
from .evqa import (
    EVQAAccuracy,
    EVQADetail,
    EVQAReference,
    EVQAResult,
    load_evqa_references,
    multi_answer_em,
    preprocess_answer,
    score_evqa,
    single_answer_em,
)
from .infoseek import (
    InfoSeekDetail,
    InfoSeekReference,
    InfoSeekResult,
    InfoSeekSplitResult,
    harmonic_mean,
    load_infoseek_references,
    normalize_answer,
    numerical_correct,
    parse_numerical,
    score_infoseek,
)
from .retrieval import (
    KS,
    RetrievalResult,
    entity_recall_at_k,
    pseudo_recall_at_k,
    recall_at_k,
    score_retrieval,
)

__all__ = [
    # shared
    "Prediction",
    "Coverage",
    "load_predictions",
    "MetricsInputError",
    "MissingPredictionsError",
    # InfoSeek
    "normalize_answer",
    "parse_numerical",
    "numerical_correct",
    "harmonic_mean",
    "InfoSeekReference",
    "load_infoseek_references",
    "score_infoseek",
    "InfoSeekResult",
    "InfoSeekSplitResult",
    "InfoSeekDetail",
    # E-VQA
    "preprocess_answer",
    "single_answer_em",
    "multi_answer_em",
    "EVQAReference",
    "load_evqa_references",
    "score_evqa",
    "EVQAResult",
    "EVQAAccuracy",
    "EVQADetail",
    # BEM
    "BEMScorer",
    "BEMLoadError",
    "DEFAULT_BEM_MODEL",
    # retrieval
    "KS",
    "recall_at_k",
    "pseudo_recall_at_k",
    "entity_recall_at_k",
    "score_retrieval",
    "RetrievalResult",
]
