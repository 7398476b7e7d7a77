"""``load_model(spec)``: one entry point for aliases, local directories, GGUF files, hub ids.

A GGUF file is dequantized once by transformers and cached as a plain safetensors directory under
``cache_dir()/models``; the directory is written beside its final place and renamed into it, so an
interrupted conversion never leaves a cache that loads half a model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lmboost.config import cache_dir
from lmboost.errors import LmboostError, ModelLoadError, ModelNotFoundError
from lmboost.models.catalog import CATALOG, DEFAULT_MODEL, get_entry

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: What ``--dtype`` takes: a dtype, or "auto" = bfloat16 on CUDA, float32 elsewhere.
DTYPE_CHOICES = ("auto", *DTYPES)


@dataclass
class LoadedModel:
    """A model with its tokenizer and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    spec: str
    path: Path | None
    is_encoder: bool = False

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a causal LM (or the MiniLM encoder) and its tokenizer, ready for inference.

    ``spec`` is a catalog alias (``lmboost models list``), a local transformers directory, a
    ``.gguf`` file, or a Hugging Face hub id. ``dtype`` is float32, bfloat16, float16 or "auto"
    (default: bfloat16 on CUDA, float32 elsewhere); ``device`` is "auto" (CUDA when available),
    "cpu", "cuda[:N]", or "balanced" (accelerate's device map over every GPU, for models larger
    than one).
    """
    target_device = resolve_device(device)
    torch_dtype = DTYPES[resolve_dtype(dtype, device)]
    # "balanced": accelerate's device map places the layers (over GPUs, then CPU) at load time.
    placement = "auto" if device == "balanced" and target_device.type == "cuda" else target_device

    if spec in CATALOG:
        entry = get_entry(spec)
        path = entry.locate()
        if entry.kind == "hf-dir":
            return _load_encoder(path, spec, torch_dtype, target_device)
        return _load_dir(cached_gguf_dir(path), spec, torch_dtype, placement, trust_remote_code)

    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}.")
        return _load_dir(cached_gguf_dir(path), spec, torch_dtype, placement, trust_remote_code)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(
                f"{path} is a directory but holds no config.json: pass a transformers model "
                "directory (save_pretrained output), a .gguf file or a catalog alias."
            )
        return _load_dir(path, spec, torch_dtype, placement, trust_remote_code)
    if _looks_like_path(spec):
        raise ModelNotFoundError(f"No such file or directory: {spec}. {_help_line()}")
    return _load_hub(spec, torch_dtype, placement, trust_remote_code)


def resolve_dtype(dtype: str, device: str = "auto") -> str:
    """The dtype name ``dtype`` stands for: "auto" is bfloat16 on CUDA, float32 elsewhere."""
    if dtype not in DTYPE_CHOICES:
        raise LmboostError(f"Unknown dtype '{dtype}'. Choose one of: {', '.join(DTYPE_CHOICES)}.")
    if dtype == "auto":
        return "bfloat16" if resolve_device(device).type == "cuda" else "float32"
    return dtype


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU; 'balanced' spreads the model over every GPU
    (and the CPU when they are full) with accelerate's device map. Devices this machine lacks
    are errors that say which it has."""
    if device in ("auto", "balanced"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        message = f"Unknown device '{device}': {err}. Use auto, cpu or cuda[:N]."
        raise LmboostError(message) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise LmboostError(
                f"--device {device}: this machine has no CUDA GPU. Use --device cpu (or auto)."
            )
        if resolved.index is not None and resolved.index >= count:
            raise LmboostError(
                f"--device {device}: this machine has {count} GPU(s), cuda:0 .. cuda:{count - 1}."
            )
    elif resolved.type != "cpu":
        raise LmboostError(f"--device {device} is not supported: use auto, cpu or cuda[:N].")
    return resolved


def cached_gguf_dir(gguf_path: Path) -> Path:
    """Directory of the float safetensors conversion of ``gguf_path``, converting on first use."""
    target = conversion_dir(gguf_path)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    tmp.chmod(0o755)
    try:
        _convert_gguf(gguf_path, tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def conversion_dir(gguf_path: Path) -> Path:
    """Where the conversion of ``gguf_path`` lives in the cache (whether or not it exists yet)."""
    return cache_dir() / "models" / f"{gguf_path.stem}-{_file_key(gguf_path)}"


def is_cached(alias: str) -> bool:
    """True when a catalog model is installed and ready to load without conversion."""
    entry = get_entry(alias)
    if not entry.installed():
        return False
    if entry.kind == "hf-dir":
        return True
    if entry.kind == "gguf-parts" and not entry.assembled_path().exists():
        return False
    return conversion_dir(entry.locate()).is_dir()


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF with transformers and save it as float32 safetensors + tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, dtype=torch.float32, **kwargs
        )
    except Exception as err:  # transformers raises many kinds for a bad file
        if "pip install" in str(err):  # a missing optional dependency, not a bad file
            raise ModelLoadError(f"Cannot convert {gguf_path.name}: {err}") from None
        raise ModelLoadError(
            f"Could not read {gguf_path} as a GGUF model ({type(err).__name__}: {err}). "
            "The file may be truncated or corrupt: reinstall it or pass another model."
        ) from None
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild from a clean config.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    clean_config = AutoConfig.for_model(**config)
    clean = AutoModelForCausalLM.from_config(clean_config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    clean.generation_config = loaded.generation_config
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _file_key(path: Path) -> str:
    """A cheap fingerprint: size plus hashes of the first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def _load_dir(
    path: Path, spec: str, dtype: torch.dtype, device: torch.device | str,
    trust_remote_code: bool,
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=trust_remote_code, **_device_map(device)
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"Could not load a causal LM from {path}: {err}") from None
    return _ready(model, tokenizer, spec, path, device)


def _load_encoder(path: Path, spec: str, dtype: torch.dtype, device: torch.device) -> LoadedModel:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=dtype)
    loaded = _ready(model, tokenizer, spec, path, device)
    loaded.is_encoder = True
    return loaded


def _load_hub(
    spec: str, dtype: torch.dtype, device: torch.device | str, trust_remote_code: bool
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline_flag = os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false")
    offline = offline_flag or not _hub_reachable()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            spec, local_files_only=offline, trust_remote_code=trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(
            spec, dtype=dtype, local_files_only=offline, trust_remote_code=trust_remote_code,
            **_device_map(device),
        )
    except (OSError, ValueError) as err:
        reason = "the Hugging Face hub is unreachable and it is not in the local HF cache" if (
            offline
        ) else f"loading failed: {err}"
        raise ModelNotFoundError(f"Cannot load '{spec}': {reason}. {_help_line()}") from None
    return _ready(model, tokenizer, spec, None, device)


def _device_map(device: torch.device | str) -> dict:
    """``from_pretrained`` arguments for a device map ("auto": accelerate places the layers)."""
    return {"device_map": device} if device == "auto" else {}


def _ready(
    model, tokenizer, spec: str, path: Path | None, device: torch.device | str
) -> LoadedModel:
    if device != "auto":  # a device-mapped model is placed already
        model.to(device)
    model.eval()
    if getattr(tokenizer, "pad_token_id", None) is None and hasattr(tokenizer, "eos_token"):
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, path=path)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub: no retry loop when the network is closed."""
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep + os.sep in spec


def _help_line() -> str:
    return (
        f"Pass a catalog alias ({', '.join(CATALOG)}), a local transformers directory or a "
        ".gguf file; `lmboost models list` shows what is installed."
    )
