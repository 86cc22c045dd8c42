"""Sharing a built index (and, optionally, its knowledge base) as a hub dataset repository.

Layout of the repository: ``index/`` (the index folder as built), ``kb/`` (the knowledge-base
folder, when pushed with it) and a dataset card ``README.md``. Both folders are verified in full
before a push (a damaged index is never published) and after a pull (a damaged download never
replaces a working copy). Images stay where they are: the KB records its image root, which a
pull on another machine does not have; evidence is then shown without images unless the images
are shared too and named by the configuration (``images`` in ``[index]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retriever.errors import UserInputError
from retriever.fileio import atomic_write_text, replace_folder
from retriever.index import MultiVectorIndex
from retriever.sharing import pull_folder, push_folder

from ..cli_args import add_hub_options
from ..kb import PassageStore

__all__ = ["SharedIndex", "push_index", "pull_index", "dataset_card", "register"]

logger = logging.getLogger(__name__)

INDEX_DIR, KB_DIR, CARD = "index", "kb", "README.md"
_SKIP = shutil.ignore_patterns(".*", "*.tmp", "*.old")


@dataclass
class SharedIndex:
    """Where a pushed or pulled index (and KB) is, with what it holds."""

    repo_id: str
    index: str
    kb: str | None
    documents: int
    method: str
    digest: str
    kb_digest: str | None
    location: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dataset_card(repo_id: str, index: MultiVectorIndex, kb: PassageStore | None) -> str:
    """A dataset card for an index repository: what it indexes, with which retriever, and how
    to use it after a pull."""
    retriever, recorded_kb = index.info.retriever, index.info.kb
    lines = ["---", "library_name: rag-vqa", "tags:", "- multi-vector-index", "- ret",
             "- knowledge-based-vqa", "---", "", f"# {repo_id}", "",
             f"A rag-vqa `{index.method}` multi-vector index of {len(index)} passages, built "
             f"with the ReT retriever `{retriever.get('name', '?')}` (weights "
             f"`{str(retriever.get('weights_xxh3', '?'))[:16]}`).", "",
             f"- index digest `{index.digest}`",
             f"- knowledge base: {recorded_kb.get('passages', '?')} passages, digest "
             f"`{recorded_kb.get('digest', '?')}`"
             + (" (included in `kb/`)" if kb is not None else " (not included)"), "",
             "## Use", "", "```bash", f"rag-vqa index pull {repo_id} DEST",
             f"rag-vqa ask photo.jpg \"Question?\" --index DEST/{INDEX_DIR}"
             + (f" --kb DEST/{KB_DIR}" if kb is not None else " --kb YOUR_KB")
             + f" --retriever {retriever.get('name', 'RETRIEVER')}", "```", ""]
    return "\n".join(lines)


def push_index(index_path: str | os.PathLike, repo_id: str, *, kb: str | os.PathLike | None = None,
               hub_dir: str | os.PathLike | None = None, private: bool = False,
               token: str | None = None) -> SharedIndex:
    """Verify ``index_path`` (and ``kb``) in full, then push them as a dataset repository."""
    index = MultiVectorIndex.load(index_path, verify="full")
    store = None
    if kb is not None:
        store = PassageStore.open(kb, verify="full")
        recorded = index.info.kb.get("digest")
        if recorded and store.digest != recorded:
            raise UserInputError(f"{kb} is not the knowledge base {index_path} was built from "
                                 f"(digest {store.digest}, the index records {recorded})")
    with tempfile.TemporaryDirectory(prefix="index-push-") as tmp:
        staged = Path(tmp) / "repo"
        shutil.copytree(index.path, staged / INDEX_DIR, ignore=_SKIP)
        if store is not None:
            shutil.copytree(store.folder, staged / KB_DIR, ignore=_SKIP)
        atomic_write_text(staged / CARD, dataset_card(repo_id, index, store))
        where = push_folder(staged, repo_id, repo_type="dataset", hub_dir=hub_dir,
                            private=private, token=token,
                            commit_message=f"Upload index {index.digest[:24]}")
    if store is not None:
        store.close()
    return SharedIndex(repo_id=repo_id, index=str(index.path),
                       kb=None if store is None else str(store.folder), documents=len(index),
                       method=index.method, digest=index.digest,
                       kb_digest=None if store is None else store.digest, location=where)


def pull_index(repo_id: str, dest: str | os.PathLike, *, hub_dir: str | os.PathLike | None = None,
               revision: str | None = None, token: str | None = None,
               overwrite: bool = False) -> SharedIndex:
    """Download an index repository into ``dest`` (``dest/index``, ``dest/kb``), verify every
    file, and only then put it in place."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise FileExistsError(f"{dest} exists and is not empty; pass --overwrite to replace it")
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.pull")
    try:
        pull_folder(repo_id, staging, repo_type="dataset", hub_dir=hub_dir, revision=revision,
                    token=token)
        if not (staging / INDEX_DIR).is_dir():
            raise UserInputError(f"{repo_id} is not an index repository (no {INDEX_DIR}/ folder)")
        index = MultiVectorIndex.load(staging / INDEX_DIR, verify="full")
        kb_digest = None
        if (staging / KB_DIR).is_dir():
            with PassageStore.open(staging / KB_DIR, verify="full") as store:
                kb_digest = store.digest
        info = SharedIndex(repo_id=repo_id, index=str(dest / INDEX_DIR),
                           kb=str(dest / KB_DIR) if kb_digest else None, documents=len(index),
                           method=index.method, digest=index.digest, kb_digest=kb_digest)
        del index  # release its memory maps before the folder moves
        replace_folder(staging, dest)
        return info
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def register(actions: argparse._SubParsersAction) -> None:
    """``rag-vqa index push`` and ``rag-vqa index pull``."""
    push = actions.add_parser(
        "push", help="upload an index (and its KB) as a hub dataset repository",
        description="Verify every file of INDEX (and --kb), then upload them with a dataset "
                    "card to the dataset repository REPO (owner/name).")
    push.add_argument("index", help="index folder")
    push.add_argument("repo_id", help="hub dataset repository, owner/name")
    push.add_argument("--kb", default=None, help="also push this knowledge-base folder "
                                                 "(must be the one the index was built from)")
    add_hub_options(push, "dataset", push=True)
    push.set_defaults(handler=_cmd_push)

    pull = actions.add_parser(
        "pull", help="download an index repository and verify it",
        description="Download REPO into DEST (DEST/index and, when pushed with it, DEST/kb); "
                    "every file is verified before DEST is replaced.")
    pull.add_argument("repo_id", help="hub dataset repository, owner/name")
    pull.add_argument("dest", help="folder to create")
    pull.add_argument("--overwrite", action="store_true", help="replace a non-empty DEST")
    add_hub_options(pull, "dataset", push=False)
    pull.set_defaults(handler=_cmd_pull)


def _cmd_push(args: argparse.Namespace) -> int:
    info = push_index(args.index, args.repo_id, kb=args.kb, hub_dir=args.hub_dir,
                      private=args.private, token=args.token)
    if args.json:
        print(json.dumps(info.to_dict()))
    else:
        print(f"pushed {info.method} index of {info.documents} passages"
              + (" with its knowledge base" if info.kb else "") + f" to {info.location}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    info = pull_index(args.repo_id, args.dest, hub_dir=args.hub_dir, revision=args.revision,
                      token=args.token, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(info.to_dict()))
        return 0
    print(f"pulled {info.method} index of {info.documents} passages into {info.index}"
          + (f", knowledge base in {info.kb}" if info.kb else ""))
    print(f"verified: index {info.digest[:28]}"
          + (f", kb {info.kb_digest[:28]}" if info.kb_digest else ""))
    return 0
