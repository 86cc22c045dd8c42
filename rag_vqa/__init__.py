"""rag-vqa: retrieval-augmented visual question answering built around ReT.

    from rag_vqa import RagVQA
    pipe = RagVQA.from_pretrained(retriever="aimagelab/ReT-CLIP-ViT-L-14",
                                  generator="llava-hf/llava-1.5-7b-hf", index="index/")
    answer = pipe.answer("photo.jpg", "When was this building completed?")
"""

__version__ = "0.1.0"

from .config import ConfigError, RagConfig, load_config  # noqa: E402
from .pipeline import Answer, Evidence, RagVQA, StreamingAnswer  # noqa: E402

__all__ = ["Answer", "ConfigError", "Evidence", "RagConfig", "RagVQA", "StreamingAnswer",
           "__version__", "load_config"]
