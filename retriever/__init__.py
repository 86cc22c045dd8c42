"""ReT retriever: configuration, modeling and processing, faithful to the released checkpoints.

    from retriever import ReTRetriever
    model = ReTRetriever.from_pretrained("aimagelab/ReT-CLIP-ViT-L-14")
    docs = model.encode_documents(["passage text", ""], ["photo.jpg", None])   # (2, 32, 128)
"""

from .checkpoint import CheckpointError
from .configuration_ret import LAYER_STRATEGIES, ConfigError, ReTConfig, ReTRetrieverConfig
from .images import ImageLoadError, load_image
from .modeling_ret import ReTCell, ReTEncoder
from .modeling_retriever import DEFAULT_QUERY_INSTRUCTION, ReTRetriever, RetrieverOutput
from .processing_ret import ProcessorLoadError, ReTInputs, ReTProcessor
from .scoring import maxsim

__all__ = [
    "CheckpointError", "ConfigError", "DEFAULT_QUERY_INSTRUCTION", "ImageLoadError",
    "LAYER_STRATEGIES", "ProcessorLoadError", "ReTCell", "ReTConfig", "ReTEncoder", "ReTInputs",
    "ReTProcessor", "ReTRetriever", "ReTRetrieverConfig", "RetrieverOutput", "load_image", "maxsim",
]
