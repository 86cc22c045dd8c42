"""``rag-vqa config init``: a commented configuration file, written from the configuration
dataclasses themselves so that it never drifts from what ``load_config`` accepts.

Every option appears, commented out, with the value the chosen profile gives it (or an example
where it has none); only ``profile`` and the index paths given on the command line are active,
so the file behaves exactly like the profile until a line is uncommented.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from retriever.errors import UserInputError
from retriever.fileio import atomic_write_text

from .config import PROFILES, RagConfig, load_config

__all__ = ["config_template", "COMMENTS", "register"]

COMMENTS: dict[str, str] = {
    "profile": "named starting point: " + ", ".join(PROFILES) + "; every option below "
               "overrides it",
    "k": "passages given to the generator (and shown as evidence)",
    "retriever.model": "ReT checkpoint: hub id or folder ('tiny': the untrained smoke model)",
    "retriever.device": "cpu, cuda, cuda:N or auto",
    "retriever.dtype": "float32, bfloat16 or float16",
    "retriever.batch_size": "queries encoded per batch (eval runs)",
    "retriever.instruction": "instruction prepended to every question, as in ReT's training",
    "index.path": "index folder from `rag-vqa index build` (relative to this file)",
    "index.kb": "knowledge-base folder (default: the one the index records)",
    "index.images": "image root of the KB's passage images (default: the KB's own)",
    "index.search": "search knobs: effort, nprobe, candidates, ndocs, rescore",
    "index.verify": "checks at load: full (every digest), size, or none",
    "index.allow_retriever_mismatch": "search with a retriever other than the one that built "
                                      "the index",
    "reranker.k_retrieve": "candidates the index returns when reranking (the best k go on)",
    "reranker.stages": "reranking stages in order ([[reranker.stages]] tables: kind = "
                       "article, mllm, cross-encoder or causal-lm; model; top; ...)",
    "answer.cite": "ask the generator to cite passages as [1], [2] (stripped before scoring)",
    "answer.calibration": "confidence calibration file from `rag-vqa eval calibrate`",
    "answer.abstain_below": "answer abstain_text when the confidence is under this (0-1)",
    "answer.abstain_text": "the abstention answer",
    "generator.model": "answering model: hub id or folder",
    "generator.kind": "image-text-to-text (image + passages) or causal-lm (text only)",
    "generator.use_passages": "false: the no-retrieval ablation",
    "generator.gguf_file": "for causal-lm models stored as GGUF",
    "generator.revision": "hub branch, tag or commit",
    "generator.device": "cpu (unset), cuda, cuda:N or auto",
    "generator.dtype": "unset: float32 on CPU, bfloat16 on CUDA",
    "generator.device_map": "auto: spread a large model over several GPUs",
    "generator.quantization": "4bit or 8bit (bitsandbytes, CUDA)",
    "generator.max_new_tokens": "answer length limit",
    "generator.do_sample": "false: greedy decoding (reproducible)",
    "generator.temperature": "sampling only",
    "generator.top_p": "sampling only",
    "generator.stop_at_newline": "cut the answer at its first line break",
    "generator.batch_size": "questions answered per batch (eval runs)",
    "generator.trust_remote_code": "run code shipped with the model (only for models you trust)",
    "generator.local_files_only": "never contact the hub",
    "generator.prompt.instruction": "what the model is asked to do with image + passages",
    "generator.prompt.no_context_instruction": "the same without passages (ablation)",
    "generator.prompt.text_only_instruction": "the same for text-only (causal-lm) models",
    "generator.prompt.context_header": "the line above the passages",
    "generator.prompt.min_passage_tokens": "a passage cut shorter than this is left out",
    "generator.prompt.examples": "worked examples before the question: [{passages = [{title, "
                                 "text}], question, answer}]",
    "generator.prompt.passage_template": "one passage: {rank}, {title}, {text}",
    "generator.prompt.untitled_passage_template": "a passage without a title",
    "generator.prompt.question_template": "the question: {question}",
    "generator.prompt.system": "system message, for models that take one",
    "generator.prompt.chat_template": "Jinja chat template for models that ship none",
    "generator.prompt.max_passage_tokens": "each passage is cut to this many tokens",
    "generator.prompt.max_prompt_tokens": "the whole prompt's budget (unset: the model's)",
    "generator.prompt.max_passages": "at most this many passages (unset: as many as fit)",
    "generator.prompt.use_chat_template": "false: plain completion text (causal-lm only)",
    "generator.prompt.cite": "ask for [1], [2] citations (the same as answer.cite)",
    "generator.prompt.cite_instruction": "what the model is told when asked to cite",
}

# values shown for options that are unset by default (TOML has no null)
EXAMPLES: dict[str, Any] = {
    "index.path": "index/", "index.kb": "kb/", "index.images": "images/",
    "index.search": {"effort": 1}, "retriever.device": "cuda", "retriever.dtype": "bfloat16",
    "generator.gguf_file": "model.gguf", "generator.revision": "main",
    "generator.device": "cuda", "generator.dtype": "bfloat16", "generator.device_map": "auto",
    "generator.quantization": "4bit", "generator.prompt.system": "You are a careful assistant.",
    "generator.prompt.chat_template": "{{ messages }}", "generator.prompt.max_prompt_tokens": 1024,
    "generator.prompt.max_passages": 3,
    # issue 15
    "reranker.stages": [{"kind": "article", "articles": 3}],
    "answer.calibration": "calibration.json", "answer.abstain_below": 0.4,
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _lines(obj: Any, prefix: str, active: dict[str, Any]) -> list[str]:
    out: list[str] = []
    tables: list[tuple[str, Any]] = []
    for f in fields(obj):
        if f.metadata.get("internal"):
            continue
        name, value = f"{prefix}{f.name}", getattr(obj, f.name)
        if is_dataclass(value):
            tables.append((name, value))
            continue
        comment = COMMENTS.get(name)
        if comment:
            out.append(f"# {comment}")
        if name in active:
            out.append(f"{f.name} = {_toml_value(active[name])}")
            continue
        shown = EXAMPLES.get(name, value) if value in (None, {}, []) else value
        if shown is None or shown == []:
            shown = EXAMPLES.get(name)
        if shown is not None:
            out.append(f"# {f.name} = {_toml_value(shown)}")
    for name, value in tables:
        out += ["", f"[{name}]", *_lines(value, f"{name}.", active)]
    return out


def config_template(profile: str = "default", index: str | None = None,
                    kb: str | None = None) -> str:
    """The text of a commented configuration file for ``profile``."""
    active: dict[str, Any] = {"profile": profile}
    if index:
        active["index.path"] = index
    if kb:
        active["index.kb"] = kb
    config: RagConfig = load_config({"profile": profile})
    head = ["# rag-vqa configuration (TOML). Uncomment a line to change it; relative paths are",
            "# relative to this file's folder. Written by `rag-vqa config init`.", ""]
    return "\n".join(head + _lines(config, "", active)) + "\n"


def register(commands: argparse._SubParsersAction) -> None:
    """``rag-vqa config init``."""
    group = commands.add_parser("config", help="configuration files")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="write a commented configuration file",
        description="Write PATH (default rag-vqa.toml): every option, commented, with the "
                    "profile's value; use it with --config on ask, demo and eval run.")
    init.add_argument("path", nargs="?", default="rag-vqa.toml")
    init.add_argument("--profile", choices=list(PROFILES), default="default")
    init.add_argument("--index", default=None, help="index folder to set")
    init.add_argument("--kb", default=None, help="knowledge-base folder to set")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(handler=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.suffix.lower() != ".toml":
        raise UserInputError(f"{path}: configuration files are TOML; name it something.toml")
    if path.exists() and not args.force:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    atomic_write_text(path, config_template(args.profile, args.index, args.kb))
    load_config(path)  # what was written must load (and find nothing wrong)
    print(f"wrote {path} (profile {args.profile}); use it with --config {path}")
    return 0
