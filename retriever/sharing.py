"""Sharing trained retrievers and indexes: push a folder to a Hugging Face hub repository (a model
repo for a retriever, a dataset repo for an index) or pull one, with a model card.

``hub_dir`` stands in for the hub with a local folder (a shared drive, or tests without a
network): a repository ``org/name`` of type ``model`` lives in ``HUB_DIR/models/org/name``, of
type ``dataset`` in ``HUB_DIR/datasets/org/name``. A push there replaces the repository folder
atomically (staged beside it, then renamed); a pull copies it. Against the real hub, push is
``create_repo`` + ``upload_folder`` and pull is ``snapshot_download``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from .errors import UserError
from .fileio import atomic_write_text, replace_folder
from .hub import looks_like_hub_id

__all__ = ["SharingError", "push_folder", "pull_folder", "push_retriever", "model_card",
           "write_model_card",
           "TRAINING_FILE", "CARD_FILE"]

logger = logging.getLogger(__name__)

TRAINING_FILE = "training.json"   # written next to a trained model: what the card reports
CARD_FILE = "README.md"
_TYPES = {"model": "models", "dataset": "datasets"}


class SharingError(UserError, ValueError):
    """A push or pull that cannot be done (bad repository id, missing folder, hub refusal)."""


def _check(repo_id: str, repo_type: str) -> None:
    if repo_type not in _TYPES:
        raise SharingError(f"repository type must be model or dataset, got {repo_type!r}")
    if "/" not in repo_id or not looks_like_hub_id(repo_id):
        raise SharingError(f"{repo_id!r} is not a hub repository id (expected owner/name)")


def _local_repo(hub_dir: str | os.PathLike, repo_id: str, repo_type: str) -> Path:
    return Path(hub_dir) / _TYPES[repo_type] / repo_id


def _copy_replace(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``: staged beside it, then swapped in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copytree(source, staging, symlinks=False)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def push_folder(folder: str | os.PathLike, repo_id: str, *, repo_type: str = "model",
                hub_dir: str | os.PathLike | None = None, private: bool = False,
                token: str | None = None, commit_message: str | None = None) -> str:
    """Upload every file of ``folder`` to the repository; returns where it went."""
    folder = Path(folder)
    _check(repo_id, repo_type)
    if not folder.is_dir():
        raise SharingError(f"{folder} is not a folder")
    if hub_dir is not None:
        target = _local_repo(hub_dir, repo_id, repo_type)
        _copy_replace(folder, target)
        logger.info("pushed %s to %s", folder, target)
        return str(target)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                                 commit_message=commit_message or f"Upload {folder.name}")
    except (HfHubHTTPError, OSError) as exc:
        raise SharingError(f"could not push {folder} to {repo_id}: {exc}") from exc
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


def pull_folder(repo_id: str, dest: str | os.PathLike, *, repo_type: str = "model",
                hub_dir: str | os.PathLike | None = None, revision: str | None = None,
                token: str | None = None) -> Path:
    """Download the repository into ``dest`` (replaced atomically); returns ``dest``."""
    _check(repo_id, repo_type)
    dest = Path(dest)
    if hub_dir is not None:
        source = _local_repo(hub_dir, repo_id, repo_type)
        if not source.is_dir():
            raise SharingError(f"no {repo_type} repository {repo_id} in {hub_dir}")
        _copy_replace(source, dest)
        return dest
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        snapshot_download(repo_id, repo_type=repo_type, revision=revision, token=token,
                          local_dir=str(staging))
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping
        _copy_replace(staging, dest)
    except (HfHubHTTPError, OSError) as exc:
        raise SharingError(f"could not pull {repo_id}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _recall_lines(validation: dict[str, Any]) -> list[str]:
    rows = [f"| {key} | {value:.4f} |" for key, value in sorted(validation.items())
            if isinstance(value, (int, float))]
    return (["| metric | value |", "|---|---|", *rows] if rows else
            ["No validation set was given."])


def model_card(name: str, config: dict[str, Any], training: dict[str, Any] | None) -> str:
    """A model card (README.md) for a ReT retriever: what it is, how it was trained (data, steps,
    validation recall, the exact command) and how to use it."""
    query = config.get("query_config", {})
    lines = ["---", "library_name: rag-vqa", "tags:", "- ret", "- multimodal-retrieval",
             "- late-interaction", "- knowledge-based-vqa", "---", "", f"# {name}", "",
             "A ReT retriever (Caffagni et al., *Recurrence-Enhanced Vision-and-Language "
             "Transformers for Robust Multimodal Document Retrieval*, CVPR 2025) in the "
             "released checkpoint layout, loadable by rag-vqa and by the authors' code.", "",
             "## Architecture", "",
             f"- layer strategy `{query.get('layer_strategy')}`, "
             f"{query.get('num_queries', 32)} output vectors of "
             f"{query.get('late_proj_output_size', query.get('output_dim', 128))} dimensions",
             f"- text backbone `{query.get('text_config', {}).get('_name_or_path', '?')}`, "
             f"vision backbone `{query.get('vision_config', {}).get('_name_or_path', '?')}`", ""]
    if training:
        job, train = training.get("job", {}), training.get("job", {}).get("train", {})
        data = training.get("data", {})
        lines += ["## Training", "",
                  f"- started from `{job.get('retriever')}`",
                  f"- training queries `{job.get('queries')}` "
                  f"({(data.get('queries') or {}).get('digest', 'no digest')})",
                  f"- passages `{job.get('passages')}` "
                  f"({(data.get('passages') or {}).get('digest', 'no digest')})",
                  f"- {training.get('steps')} steps, batch size {train.get('batch_size', '?')}, "
                  f"learning rate {train.get('learning_rate', '?')}, final loss "
                  f"{training.get('final_loss', float('nan')):.4f}", "",
                  "Validation:", "", *_recall_lines(training.get("validation") or {}), "",
                  "The exact command:", "", "```bash",
                  " ".join(training.get("command") or ["(not recorded)"]), "```", ""]
    else:
        lines += ["## Training", "", "Not recorded (no training.json next to the weights).", ""]
    lines += ["## Use", "", "```python", "from retriever import ReTRetriever", "",
              f'model = ReTRetriever.from_pretrained("{name}")',
              'docs = model.encode_documents(["a passage"], ["photo.jpg"])', "```", "",
              "```bash", f"rag-vqa index build KB --retriever {name} --out INDEX", "```", ""]
    return "\n".join(lines)


def push_retriever(folder: str | os.PathLike, repo_id: str, *,
                   hub_dir: str | os.PathLike | None = None, private: bool = False,
                   token: str | None = None, commit_message: str | None = None) -> str:
    """Push a saved retriever folder (config, weights, processor, training record) as a model
    repository with a model card written for it."""
    import tempfile

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise SharingError(f"{folder} is not a saved retriever (no config.json)")
    with tempfile.TemporaryDirectory(prefix="ret-push-") as tmp:
        staged = Path(tmp) / "repo"
        shutil.copytree(folder, staged, ignore=shutil.ignore_patterns(".*"))
        write_model_card(staged, repo_id)
        return push_folder(staged, repo_id, repo_type="model", hub_dir=hub_dir,
                           private=private, token=token, commit_message=commit_message)


def write_model_card(folder: str | os.PathLike, name: str) -> Path:
    """Write README.md into a saved retriever folder from its config and training record."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    training_path = folder / TRAINING_FILE
    training = json.loads(training_path.read_text(encoding="utf-8")) \
        if training_path.is_file() else None
    return atomic_write_text(folder / CARD_FILE, model_card(name, config, training))
