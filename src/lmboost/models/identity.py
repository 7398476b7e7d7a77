"""What a model is, by content: fingerprints of its weights, for keying stored results.

Stored scores and chains are keyed by these, never by the name a model was given, so a folder
whose weights were replaced gives a new fingerprint (and its results are computed anew):

- a converted-model cache folder (``lmboost-manifest.json``): the SHA-256 checksums its manifest
  lists;
- a local transformers directory, or a hub id's snapshot in the local Hugging Face cache: the
  SHA-256 of each of its files (weights, config, tokenizer; not ``*.md`` or dotfiles), computed
  once per file and cached under ``cache_dir()/fingerprints`` keyed by path, size and mtime;
- a model in memory: its parameters and buffers, byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lmboost.config import cache_dir
from lmboost.evaluation.records import read_json, write_json
from lmboost.models.loading import MANIFEST, _sha256, locate_model

if TYPE_CHECKING:
    from lmboost.backends import Backend
    from lmboost.models.loading import LoadedModel


def weights_fingerprint(spec: str) -> str | None:
    """The fingerprint of the model ``spec`` names (see the module docstring), or None for a hub
    id that is not in the local Hugging Face cache yet (load it first)."""
    where = locate_model(spec)
    if isinstance(where, str):
        snapshot = _hub_snapshot(where)
        if snapshot is None:
            return None
        where = snapshot
    return _digest({"files": _manifest_checksums(where) or _folder_checksums(where)})


def module_fingerprint(model: torch.nn.Module) -> str:
    """The fingerprint of a model in memory: its class and every entry of its state dict."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor) and not value.is_quantized:
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:  # quantized tensors, packed parameters: their serialized form
            buffer = io.BytesIO()
            torch.save(value, buffer)
            digest.update(buffer.getvalue())
    return digest.hexdigest()


def backend_fingerprint(model: Backend | LoadedModel, spec: str) -> str | None:
    """The fingerprint of a model already loaded: its weights in memory where the backend holds
    them (transformers), else those of ``spec`` (vLLM loads from it)."""
    module = getattr(model, "model", None)
    if isinstance(module, torch.nn.Module):
        return module_fingerprint(module)
    return weights_fingerprint(spec)


def loaded_fingerprint(model: Backend | LoadedModel, spec: str) -> str:
    """:func:`backend_fingerprint`, or ``name:<spec>`` (with a warning) when the weights cannot
    be read: results are then keyed by the model's name only."""
    weights = backend_fingerprint(model, spec)
    if weights is None:
        warnings.warn(
            f"Cannot fingerprint the weights of {spec!r}: its results are keyed by its name only.",
            stacklevel=3,
        )
        return f"name:{spec}"
    return weights


def _manifest_checksums(folder: Path) -> dict[str, str] | None:
    """The checksums a converted-model cache's manifest lists (None without a readable one)."""
    try:
        listed = read_json(folder / MANIFEST)["files"]
        return {name: str(facts["sha256"]) for name, facts in listed.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _folder_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of each file of ``folder`` that can change a model's outputs, reusing the cached
    checksum of every file whose size and mtime are unchanged."""
    record_path = cache_dir() / "fingerprints" / f"{_digest(str(folder.resolve()))[:32]}.json"
    try:
        cached = read_json(record_path)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        cached = {}
    files: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix == ".md":
            continue
        stat = path.stat()
        known = cached.get(path.name)
        if isinstance(known, dict) and [known.get("size"), known.get("mtime_ns")] == [
            stat.st_size, stat.st_mtime_ns
        ]:
            files[path.name] = known
        else:
            files[path.name] = {
                "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)
            }
    if files != cached:
        # A read-only cache: the checksums are computed again next time.
        with contextlib.suppress(OSError):
            write_json(record_path, {"folder": str(folder.resolve()), "files": files})
    return {name: facts["sha256"] for name, facts in files.items()}


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub id (the revision the HF cache resolves), or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id: nothing on disk to fingerprint
        return None


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()

