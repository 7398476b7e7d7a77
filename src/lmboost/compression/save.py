"""Save and load compressed models, in safetensors only (no pickles).

- Float models (dense, magnitude- or Wanda-pruned, neuron-pruned) are written with
  ``save_pretrained``: a normal transformers directory (a neuron-pruned one has the smaller
  ``intermediate_size`` in its config) that ``from_pretrained`` and ``load_model`` read.
- Quantized models are written as ``config.json`` + tokenizer + ``model.safetensors`` holding the
  float tensors and, for each quantized Linear ``name``, ``name.weight_int8``, ``name.scale``
  (and ``name.zero_point``, ``name.bias`` where the scheme has them), described by
  ``compression.json``: ``{"format", "version", "dtype", "modules": {name: scheme}, "tied":
  {alias: source}}``. :func:`load_compressed` rebuilds the architecture from the config,
  quantizes the same modules and writes the stored tensors back: the reloaded model computes
  exactly what the saved one did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from lmboost.compression.quantize import get_quantizer, quantized_modules
from lmboost.errors import ModelLoadError
from lmboost.evaluation.records import atomic_file, read_json, write_json
from lmboost.models.loading import (
    COMPRESSED_FORMAT_FILE,
    DTYPES,
    LoadedModel,
    check_remote_code,
    is_lmboost_compressed,
    load_model,
)

FORMAT = "lmboost-compressed"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"


def compressed_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors that describe ``model`` (quantized modules as their int8 export) and the
    tied aliases left out of them (``{alias: source}``, e.g. a head tied to the embeddings)."""
    quantized = quantized_modules(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, quantizer in quantized.items():
        exported = quantizer.export(model.get_submodule(name))
        tensors.update((f"{name}.{k}", v.detach().contiguous()) for k, v in exported.items())
    seen: dict[tuple, str] = {}
    tied: dict[str, str] = {}
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor) or _owner(key, quantized):
            continue
        identity = (value.untyped_storage().data_ptr(), value.storage_offset(), value.shape)
        if identity in seen:
            tied[key] = seen[identity]
            continue
        seen[identity] = key
        tensors[key] = value.detach().contiguous()
    return tensors, tied


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the tensors :func:`save_compressed` writes for ``model`` (file headers aside)."""
    tensors, _ = compressed_state(model)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def save_compressed(model: nn.Module, tokenizer: Any, out: str | Path) -> Path:
    """Write ``model`` and ``tokenizer`` to the folder ``out`` (see the module docstring);
    returns ``out``. A float model becomes a plain transformers directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quantized = quantized_modules(model)
    if not quantized:
        # a stale description would change how the folder loads
        (out / COMPRESSED_FORMAT_FILE).unlink(missing_ok=True)
        model.save_pretrained(out)
    else:
        tensors, tied = compressed_state(model)
        with atomic_file(out / WEIGHTS_FILE, "wb") as f:
            f.write(safetensors_bytes(tensors, metadata={"format": "pt"}))
        model.config.save_pretrained(out)
        write_json(out / COMPRESSED_FORMAT_FILE, {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dtype": _dtype_name(model),
            "modules": {name: q.name for name, q in quantized.items()},
            "tied": tied,
        })
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_compressed(
    path: str | Path, *, device: str = "cpu", trust_remote_code: bool = False
) -> LoadedModel:
    """Load a folder written by :func:`save_compressed` (or any transformers directory); a
    model that maps to its own code (auto_map) is refused unless ``trust_remote_code``."""
    path = Path(path)
    if not is_lmboost_compressed(path):
        return load_model(str(path), device=device, trust_remote_code=trust_remote_code)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    check_remote_code(path, trust_remote_code)

    meta = read_json(path / COMPRESSED_FORMAT_FILE)
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path / COMPRESSED_FORMAT_FILE} is not a {FORMAT} v{FORMAT_VERSION} description; "
            "this version of lmboost cannot load it."
        )
    tensors = load_file(path / WEIGHTS_FILE)
    for alias, source in meta["tied"].items():
        tensors[alias] = tensors[source]
    modules: dict[str, str] = meta["modules"]
    model = AutoModelForCausalLM.from_config(
        AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code),
        dtype=DTYPES[meta["dtype"]],
        trust_remote_code=trust_remote_code,
    )
    floats = {k: v for k, v in tensors.items() if not _owner(k, modules)}
    missing, unexpected = model.load_state_dict(floats, strict=False)
    unset = [k for k in missing if not _owner(k, modules)]
    if unset or unexpected:
        raise ModelLoadError(
            f"{path / WEIGHTS_FILE} does not match its config: missing {unset[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    for scheme in dict.fromkeys(modules.values()):
        get_quantizer(scheme).apply(model, [n for n, s in modules.items() if s == scheme])
    for name, scheme in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        get_quantizer(scheme).restore(model.get_submodule(name), own)
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, spec=str(path), path=path)


def _owner(key: str, modules: dict[str, Any]) -> str | None:
    """The quantized module that state key ``key`` belongs to, if any."""
    for name in modules:
        if key.startswith(f"{name}."):
            return name
    return None


def _dtype_name(model: nn.Module) -> str:
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    return next(name for name, d in DTYPES.items() if d == dtype)
