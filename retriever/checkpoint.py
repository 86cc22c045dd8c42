"""Reading and writing ReT weights in the released checkpoint layout (spec section 6).

The released files were written by transformers 4.45, whose CLIP towers carry an inner
``text_model.`` / ``vision_model.`` level; transformers 5 dropped it. Keys are mapped here,
explicitly and strictly: every checkpoint key must land on a parameter, and every parameter must
be filled, or loading fails with an error naming the keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import UserError
from .fileio import atomic_write, atomic_write_text
from .hub import HubUnavailableError, hub_access

__all__ = [
    "CheckpointError",
    "tower_key_map",
    "iter_checkpoint_tensors",
    "load_mapped_tensors",
    "save_sharded_safetensors",
    "resolve_pretrained_dir",
]

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be found, read or matched to the model."""


def _inner_prefix(backbone: nn.Module, name: str) -> str:
    """The inner level (e.g. ``text_model.``) released keys carry but the installed
    transformers' tower lacks; empty when the tower is still nested (transformers 4.x)."""
    keys = list(backbone.state_dict().keys())
    nested = bool(keys) and all(k.startswith(name + ".") for k in keys)
    return "" if nested else name + "."


def tower_key_map(encoder: nn.Module, released_prefix: str, own_prefix: str, *,
                  text: bool = True, vision: bool = True, fixed_buffers: bool = False
                  ) -> dict[str, str]:
    """Released key -> our state-dict key, for one ReT encoder.

    ``text`` / ``vision`` say whether this tower stores its own backbone (a shared backbone is
    stored once, under the query tower). With ``fixed_buffers`` the map covers the
    non-persistent buffers instead (e.g. CLIP ``position_ids``), which some checkpoints carry.
    """
    inner = {"text_model": _inner_prefix(encoder.text_model, "text_model"),
             "vision_model": _inner_prefix(encoder.vision_model, "vision_model")}
    persistent = list(encoder.state_dict().keys())
    if fixed_buffers:
        keep = set(persistent)
        keys = [n for n, _ in encoder.named_buffers(remove_duplicate=False) if n not in keep]
    else:
        keys = persistent
    mapping: dict[str, str] = {}
    for key in keys:
        top = key.split(".", 1)[0]
        if top == "text_model" and not text or top == "vision_model" and not vision:
            continue
        released = f"{top}.{inner[top]}{key[len(top) + 1:]}" if top in inner else key
        mapping[released_prefix + released] = own_prefix + key
    return mapping


def _weight_files(folder: Path) -> list[Path]:
    for index_name in (SAFE_INDEX, BIN_INDEX):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as exc:
                raise CheckpointError(f"{index} is not a valid shard index: {exc}") from exc
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (folder / f).is_file()]
            if missing:
                raise CheckpointError(f"{index} names shard(s) that are missing: {missing}")
            return [folder / f for f in files]
    for name in (SAFE_WEIGHTS, BIN_WEIGHTS):
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(f"no weights in {folder}: expected {SAFE_WEIGHTS}, {SAFE_INDEX} "
                          f"(sharded) or {BIN_WEIGHTS}")


def iter_checkpoint_tensors(folder: str | os.PathLike) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (key, tensor) one at a time, so loading never holds two copies of the model."""
    for path in _weight_files(Path(folder)):
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), framework="pt", device="cpu") as handle:
                    for key in handle.keys():
                        yield key, handle.get_tensor(key)
            except (OSError, ValueError, SafetensorError) as exc:
                raise CheckpointError(f"cannot read {path} (corrupt or truncated?): {exc}") from exc
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # unpickling errors have no common base class
                raise CheckpointError(f"cannot read {path} safely (weights_only): {exc}") from exc
            yield from state.items()


def _preview(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_mapped_tensors(model: nn.Module, mapping: dict[str, str],
                        tensors: Iterator[tuple[str, torch.Tensor]], source: str,
                        fixed: dict[str, str] | None = None) -> None:
    """Copy checkpoint tensors into ``model`` through ``mapping`` (released key -> our key).

    Keys in ``fixed`` (non-persistent buffers) are compared with the model's own values instead.
    Strict: unknown keys, missing keys and shape mismatches raise one error naming them all.
    """
    targets = model.state_dict(keep_vars=True)
    buffers = dict(model.named_buffers(remove_duplicate=False))
    fixed = fixed or {}
    seen: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    with torch.no_grad():
        for key, tensor in tensors:
            if key in mapping:
                seen.add(key)
                target = targets[mapping[key]]
                if tuple(target.shape) != tuple(tensor.shape):
                    mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model "
                                      f"{tuple(target.shape)}")
                else:
                    target.copy_(tensor)
            elif key in fixed:
                ours = buffers[fixed[key]]
                if ours.shape != tensor.shape or not torch.equal(ours.cpu(), tensor.to(ours.dtype)):
                    mismatched.append(f"{key}: differs from the model's fixed buffer")
            else:
                unexpected.append(key)
    missing = [k for k in mapping if k not in seen]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) not used by the model: "
                        f"{_preview(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s) the model needs: {_preview(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} mismatch(es): {_preview(mismatched)}")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match the model configuration:\n  - "
                              + "\n  - ".join(problems))


def save_sharded_safetensors(state: dict[str, torch.Tensor], folder: str | os.PathLike,
                             max_shard_bytes: int = 5 * 1024**3) -> list[str]:
    """Write ``state`` as model.safetensors, or as numbered shards plus an index when larger than
    ``max_shard_bytes``; stale weight files from an earlier save are removed. Returns file names."""
    folder = Path(folder)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        names = [SAFE_WEIGHTS]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        atomic_write(folder / name,
                     lambda tmp, shard=shard: save_file(shard, tmp, metadata={"format": "pt"}))
    if len(shards) > 1:
        weight_map = {key: name for name, shard in zip(names, shards) for key in shard}
        total = sum(t.numel() * t.element_size() for s in shards for t in s.values())
        atomic_write_text(folder / SAFE_INDEX, json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2,
            sort_keys=True))
    keep = set(names) | ({SAFE_INDEX} if len(shards) > 1 else set())
    for stale in list(folder.glob("model*.safetensors")) + [folder / SAFE_INDEX]:
        if stale.name not in keep and stale.exists():
            stale.unlink()
    return names


def resolve_pretrained_dir(name_or_path: str | os.PathLike, *, revision: str | None = None,
                           cache_dir: str | None = None, local_files_only: bool = False,
                           token: str | bool | None = None, config_only: bool = False) -> Path:
    """A local folder as is, or a hub repo id fetched (or found in the cache) with huggingface_hub.

    ``config_only`` fetches just config.json (enough to describe a checkpoint)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a checkpoint folder (config.json and "
                              "weights) or a hub repo id such as aimagelab/ReT-CLIP-ViT-L-14")
    name = str(name_or_path)
    if name.count("/") > 1 or name.startswith((".", "/", "~")) or not name.strip():
        raise CheckpointError(f"no such checkpoint folder: {name}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        local_files_only = hub_access(name, "ReT retriever", revision=revision,
                                      cache_dir=cache_dir, local_files_only=local_files_only)
    except HubUnavailableError as exc:
        raise CheckpointError(f"cannot load ReT retriever: {exc}") from exc
    try:
        return Path(snapshot_download(name, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only, token=token,
                                      allow_patterns=["config.json"] if config_only
                                      else _HUB_PATTERNS))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise CheckpointError(
            f"{name!r} is not a local folder and is not in the Hugging Face cache, and downloads "
            "are off or the hub is unreachable (HF_HUB_OFFLINE / local_files_only / no network). "
            "Download it once with network access, or pass the path of a local copy.") from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(f"no hub repository {name!r} (check the id; gated or private repos "
                              "need a token: `hf auth login`)") from exc
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"{name!r} has no revision {revision!r}") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointError(f"could not fetch {name!r} from the hub: {exc}. Check the network "
                              "or pass a local folder.") from exc
