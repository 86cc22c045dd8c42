"""Which answering model to use and how: one dataclass, validated, loadable from a mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retriever.dataconfig import from_mapping

from .prompts import PromptConfig

__all__ = ["GeneratorConfig", "KINDS"]

# kind -> what it feeds the model
KINDS = {
    "image-text-to-text": "image + passages + question (LLaVA, Qwen2-VL, SmolVLM, Idefics3, ...)",
    "causal-lm": "passages + question, no image (any AutoModelForCausalLM, GGUF included)",
}


@dataclass
class GeneratorConfig:
    model: str
    kind: str = "image-text-to-text"
    use_passages: bool = True           # False: the no-retrieval ablation (image + question)
    gguf_file: str | None = None        # for causal-lm models stored as GGUF
    revision: str | None = None
    device: str | None = None           # None: CPU; "cuda", "cuda:1", "auto"
    dtype: str | None = None            # None: float32 on CPU, bfloat16 on CUDA
    device_map: str | None = None       # "auto": spread a large model over GPUs (accelerate)
    quantization: str | None = None     # "4bit" / "8bit" (bitsandbytes)
    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    stop_at_newline: bool = True
    batch_size: int = 8
    trust_remote_code: bool = False
    local_files_only: bool = False
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("generator.model is required (a hub id or a local folder)")
        if self.kind not in KINDS:
            raise ValueError(f"generator.kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.quantization not in (None, "4bit", "8bit"):
            raise ValueError(f"generator.quantization must be 4bit or 8bit, got "
                             f"{self.quantization!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("generator.max_new_tokens and batch_size must be at least 1")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError("sampling needs temperature > 0 and 0 < top_p <= 1")
        if isinstance(self.prompt, Mapping):
            self.prompt = PromptConfig.from_dict(self.prompt)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GeneratorConfig:
        return from_mapping(cls, values, what="generator option")
