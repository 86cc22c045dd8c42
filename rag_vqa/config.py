"""Pipeline configuration: one TOML file (or a dict), named profiles, clear errors.

    profile = "default"              # start from a profile, then override any field ("auto":
                                     # "default" when its models are downloaded, else "sample")
    k = 5

    [retriever]
    model = "aimagelab/ReT-CLIP-ViT-L-14"
    device = "cuda"
    dtype = "bfloat16"

    [index]
    path = "index/"                  # built with `rag-vqa index build`; relative paths in a
                                     # file are relative to the file's folder
    kb = "kb/"                       # optional: the index manifest records its knowledge base

    [generator]
    model = "llava-hf/llava-1.5-7b-hf"
    max_new_tokens = 32

    [generator.prompt]
    instruction = "..."
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from generator import GeneratorConfig
from generator.tiny import TINY_GENERATOR_NAME
from retriever import DEFAULT_QUERY_INSTRUCTION
from retriever.dataconfig import check_keys, check_types
from retriever.errors import UserError
from retriever.index.params import check_search_params

from .loading import DEFAULT_RETRIEVER
from .reranking import AnswerSettings, RerankSettings
from .sample_models import SAMPLE, sample_profile

__all__ = ["RagConfig", "RetrieverSettings", "IndexSettings", "PROFILES", "ConfigError",
           "load_config", "TINY", "SAMPLE", "AUTO", "DEFAULT_GENERATOR", "SMALL_GENERATOR"]

TINY = "tiny"
AUTO = "auto"                          # profile = "auto": see load_config
# the profiles' hub models (the retriever's: rag_vqa.loading.DEFAULT_RETRIEVER)
DEFAULT_GENERATOR = "llava-hf/llava-1.5-7b-hf"
SMALL_GENERATOR = "HuggingFaceTB/SmolVLM-256M-Instruct"


class ConfigError(UserError, ValueError):
    """A configuration that cannot work; the message names the field and what is allowed."""


@dataclass
class RetrieverSettings:
    model: str = DEFAULT_RETRIEVER
    device: str | None = None
    dtype: str | None = None
    batch_size: int = 32
    instruction: str = DEFAULT_QUERY_INSTRUCTION


@dataclass
class IndexSettings:
    path: str | None = None
    kb: str | None = None
    images: str | None = None          # overrides the KB's image root
    # effort (1 = the index's adaptive defaults, 2 = more recall), nprobe, candidates, ndocs,
    # rescore: see retriever.index.params
    search: dict[str, Any] = field(default_factory=dict)
    # how much of the index and KB to check at load: "full" (every file's digest, the default),
    # "size" or "none" (only the manifests' seals; for huge indexes on trusted storage)
    verify: str = "full"
    # search an index with a retriever whose weights differ from the one that built it
    allow_retriever_mismatch: bool = False

    def __post_init__(self) -> None:
        if self.verify not in ("full", "size", "none"):
            raise ValueError(f"index.verify must be full, size or none, got {self.verify!r}")
        if isinstance(self.search, Mapping):
            check_search_params(self.search)  # unknown keys and bad values fail at load


PROFILES: dict[str, dict[str, Any]] = {
    "default": {"retriever": {"model": DEFAULT_RETRIEVER},
                "generator": {"model": DEFAULT_GENERATOR, "kind": "image-text-to-text"}},
    "small": {"retriever": {"model": DEFAULT_RETRIEVER},
              "generator": {"model": SMALL_GENERATOR, "kind": "image-text-to-text"}},
    # offline and real: ReT trained on the bundled sample + SmolLM2-135M (text only)
    SAMPLE: sample_profile(),
    TINY: {"retriever": {"model": TINY},
           "generator": {"model": TINY_GENERATOR_NAME, "kind": "image-text-to-text"}},
}


@dataclass
class RagConfig:
    profile: str = "default"
    k: int = 5
    retriever: RetrieverSettings = field(default_factory=RetrieverSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    generator: GeneratorConfig = field(
        default_factory=lambda: GeneratorConfig(model=DEFAULT_GENERATOR))
    # set by load_config: True when the file or the caller chose retriever.model; otherwise an
    # index's own retriever (recorded in its manifest) wins over the profile's default
    retriever_explicit: bool = field(default=False, metadata={"internal": True})
    # issue 15: reranking between the index and the generator; citations, confidence,
    # abstention (see rag_vqa.reranking)
    reranker: RerankSettings = field(default_factory=RerankSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)

    @property
    def is_tiny(self) -> bool:
        return self.retriever.model == TINY or self.generator.model == TINY_GENERATOR_NAME

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_keys(section: str, values: Mapping[str, Any], cls: type) -> None:
    check_keys(values, cls, prefix=section, error=ConfigError)


def _build(cls: type, section: str, values: Any) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{section}] must be a table of options, got {type(values).__name__}")
    _check_keys(f"{section}.", values, cls)
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from exc
    check_types(obj, prefix=f"{section}.", error=ConfigError)
    return obj


_PATH_FIELDS = (("index", "path"), ("index", "kb"), ("index", "images"),
                ("answer", "calibration"))
_MODEL_FIELDS = (("retriever", "model"), ("generator", "model"))


def _relative_to(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A file's relative paths made relative to its own folder, so the file works from any
    working directory: index paths always, model names only when they name an existing folder
    there (otherwise they are hub ids)."""
    raw = dict(raw)
    for section, key in _PATH_FIELDS + _MODEL_FIELDS:
        table = raw.get(section)
        value = table.get(key) if isinstance(table, Mapping) else None
        if not isinstance(value, str) or not value.strip() or value.startswith("~") or \
                Path(value).is_absolute():
            continue
        candidate = folder / value
        if (section, key) in _PATH_FIELDS or candidate.is_dir():
            raw[section] = {**table, key: os.path.normpath(candidate)}
    return raw


def load_config(source: str | os.PathLike | Mapping[str, Any] | None = None,
                **overrides: Any) -> RagConfig:
    """A validated RagConfig from a TOML file, a mapping, or nothing (the default profile);
    ``overrides`` (same shape as the file) win over both."""
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        path = Path(source)
        if path.suffix.lower() != ".toml":
            raise ConfigError(f"{path}: configuration files are TOML (.toml)")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        raw = _relative_to(raw, Path(os.path.abspath(path)).parent)
    raw = _merge(raw, overrides)
    _check_keys("", raw, RagConfig)
    explicit = isinstance(raw.get("retriever"), Mapping) and raw["retriever"].get("model") \
        is not None
    profile = raw.get("profile", "default")
    if profile == AUTO:  # the default models when downloaded, else the offline sample
        from .quickstart import choose_profile  # (it builds on this module)

        profile = choose_profile(AUTO)[0]
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of "
                          f"{', '.join([AUTO, *PROFILES])}")
    merged = _merge(PROFILES[profile], raw)
    k = merged.get("k", 5)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    generator = dict(merged.get("generator", {}))
    _check_keys("generator.", generator, GeneratorConfig)
    if generator.get("model") == TINY:  # the same alias the retriever has
        generator["model"] = TINY_GENERATOR_NAME
    try:
        generator_config = GeneratorConfig.from_dict(generator)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[generator]: {exc}") from exc
    answer = _build(AnswerSettings, "answer", merged.get("answer", {}))
    if answer.cite or generator_config.prompt.cite:  # issue 15: [1], [2] asked and read back
        answer.cite = generator_config.prompt.cite = True
    return RagConfig(profile=profile, k=k,
                     retriever=_build(RetrieverSettings, "retriever",
                                      merged.get("retriever", {})),
                     index=_build(IndexSettings, "index", merged.get("index", {})),
                     generator=generator_config, retriever_explicit=bool(explicit),
                     reranker=_build(RerankSettings, "reranker", merged.get("reranker", {})),
                     answer=answer)
