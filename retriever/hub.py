"""Deciding, in seconds, whether a Hugging Face hub model can be loaded here.

Without a network, ``from_pretrained`` of a hub id retries for minutes before it fails. Every
loader of a hub model (retriever, generator, BEM, tokenizers) asks :func:`hub_access` first: a
model already in the cache loads from it (``local_files_only``) when the hub cannot be reached,
and a model that is neither cached nor reachable fails at once with what to do.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .errors import UserError

__all__ = ["HubUnavailableError", "hub_access", "is_cached", "looks_like_hub_id", "probe_hub",
           "PROBE_TIMEOUT"]

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 4.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class HubUnavailableError(UserError, RuntimeError):
    """A hub model that is not in the local cache while the hub cannot be reached."""


def looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not name.endswith((".", "-")) and ".." not in name


def is_cached(repo_id: str, filename: str = "config.json", revision: str | None = None,
              cache_dir: str | None = None) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local hub cache (nothing is fetched)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    except (ImportError, ValueError, OSError):
        return False
    return isinstance(found, str)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def probe_hub(timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when the hub endpoint answers within ``timeout`` seconds (any HTTP status), else
    why not. Honours HF_ENDPOINT and the usual proxy variables."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout, follow_redirects=False)
    except (httpx.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def hub_access(name: str, what: str, *, filename: str = "config.json",
               revision: str | None = None, cache_dir: str | None = None,
               local_files_only: bool = False, probe_cached: bool = True) -> bool:
    """The ``local_files_only`` to load hub model ``name`` with, or HubUnavailableError now.

    Local folders and non-hub names return ``local_files_only`` unchanged (their loaders report
    them). ``what`` names the model in the log ("generator model", "BEM model"); callers put it
    in front of the error's message. ``probe_cached`` False skips the network probe for a
    cached model (an early check: the load that follows probes)."""
    if Path(os.path.expanduser(name)).exists() or not looks_like_hub_id(name):
        return local_files_only
    cached = is_cached(name, filename, revision, cache_dir)
    if local_files_only or _offline():
        if cached:
            return True
        why = ("local_files_only is set" if local_files_only else
               "HF_HUB_OFFLINE=1 turns downloads off")
        raise HubUnavailableError(
            f"{name!r} is not in the Hugging Face cache and {why}. Download it once with "
            f"network access (`hf download {name}`), or pass the path of a local copy.")
    if cached and not probe_cached:  # a check before loading: the load itself probes
        return local_files_only
    problem = probe_hub()
    if problem is None:
        return False
    if cached:
        logger.warning("the Hugging Face hub is unreachable (%s); loading %s %s from the local "
                       "cache", problem, what, name)
        return True
    from huggingface_hub import constants

    raise HubUnavailableError(
        f"{name!r} is not in the Hugging Face cache and the hub at {constants.ENDPOINT} "
        f"cannot be reached ({problem}). Download it on a machine with network access "
        f"(`hf download {name}`) and copy the cache (~/.cache/huggingface), or pass the path "
        "of a local copy; set HF_HUB_OFFLINE=1 to never try the network.")
