"""``load_model(spec)``: one entry point for aliases, local directories, GGUF files, hub ids.

A GGUF file is dequantized once by transformers and cached as a plain safetensors directory under
``cache_dir()/models``; the directory is written beside its final place (``.converting-PID@HOST-*``)
and renamed into it, so an interrupted conversion never leaves a cache that loads half a model.

Every cache folder carries ``lmboost-manifest.json`` (each file's size and SHA-256), written last.
Each load checks the sizes and the safetensors headers (cheap); ``lmboost models pull`` and
``lmboost models list --verify`` also check the checksums. A damaged cache is a :class:`CacheError`
that names the folder and the fix, ``lmboost models pull NAME``, which removes and rebuilds it. A
cache from before manifests is checked the same way (sizes against the safetensors headers) and
then given its manifest. Temporary folders of killed conversions are removed by the next
conversion: those whose process is gone, or older than a day when that cannot be told.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import struct
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from lmboost.config import cache_dir
from lmboost.errors import (
    CacheError,
    ConfigError,
    ModelLoadError,
    ModelNotFoundError,
    RemoteCodeError,
)
from lmboost.evaluation.records import read_json, write_json
from lmboost.models.catalog import CATALOG, DEFAULT_MODEL, get_entry
from lmboost.models.spm import as_bpe

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: What ``--dtype`` takes: a dtype, or "auto" = bfloat16 on CUDA, float32 elsewhere.
DTYPE_CHOICES = ("auto", *DTYPES)
#: The file in a converted-model cache folder that lists its files, sizes and checksums.
MANIFEST = "lmboost-manifest.json"
#: The GGUF conversion recipe; raised when it changes what a conversion holds (2: SentencePiece
#: tokenizers as BPE, :mod:`lmboost.models.spm`).
CONVERSION_VERSION = 2
MANIFEST_FORMAT = "lmboost-cache-manifest"
#: The file that marks a folder of lmboost's own int8 format (:mod:`lmboost.compression.save`).
COMPRESSED_FORMAT_FILE = "compression.json"
#: A conversion folder whose owner cannot be checked is left alone until it is this old.
STALE_AFTER_S = 24 * 3600
_CONVERTING = ".converting-"


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

    ``spec`` is a catalog alias (``lmboost models list``), a local transformers directory (or
    an int8 one written by ``lmboost compress``, in its saved dtype), a ``.gguf`` file, or a
    Hugging Face hub id. ``dtype`` is float32, bfloat16, float16 or "auto"
    (default: bfloat16 on CUDA, float32 elsewhere); ``device`` is "auto" (CUDA when available),
    "cpu", "cuda[:N]", or "balanced" (accelerate's device map over every GPU, for models larger
    than one).
    """
    target_device = resolve_device(device)
    torch_dtype = DTYPES[resolve_dtype(dtype, device)]
    # "balanced": accelerate's device map places the layers (over GPUs, then CPU) at load time.
    placement = "auto" if device == "balanced" and target_device.type == "cuda" else target_device

    where = locate_model(spec)
    if isinstance(where, str):
        return _load_hub(where, torch_dtype, placement, trust_remote_code)
    if is_lmboost_compressed(where):
        from lmboost.compression.save import load_compressed

        return load_compressed(where, device=str(target_device),
                               trust_remote_code=trust_remote_code)
    if spec in CATALOG and get_entry(spec).kind == "hf-dir":
        return _load_encoder(where, spec, torch_dtype, target_device)
    return _load_dir(where, spec, torch_dtype, placement, trust_remote_code)


def is_lmboost_compressed(path: str | Path) -> bool:
    """Whether ``path`` is a folder of lmboost's own int8 format (``lmboost compress --quantize
    int8-weight|int8-dynamic``), which only the hf backend loads."""
    return (Path(path) / COMPRESSED_FORMAT_FILE).is_file()


def locate_model(spec: str) -> Path | str:
    """The local transformers directory behind ``spec`` (a catalog alias's, a ``.gguf`` file's
    conversion, converted on first use, or the directory itself), or ``spec`` unchanged when it
    is a hub id. Every command resolves a model spec here."""
    if spec in CATALOG:
        entry = get_entry(spec)
        path = entry.locate()
        return path if entry.kind == "hf-dir" else cached_gguf_dir(path, spec)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}.")
        return cached_gguf_dir(path, spec)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(
                f"{path} is a directory but holds no config.json: pass a transformers model "
                "directory (save_pretrained output), a .gguf file or a catalog alias."
            )
        return path
    if path.is_file():
        raise ModelLoadError(
            f"{path} is a file, not a model: pass a transformers model directory "
            "(save_pretrained output), a .gguf file or a catalog alias."
        )
    if _looks_like_path(spec):
        raise ModelNotFoundError(f"No such file or directory: {spec}. {_help_line()}")
    return spec


def check_remote_code(path: Path, trust_remote_code: bool) -> None:
    """Refuse a model folder whose config or tokenizer config maps to its own Python code
    (``auto_map``) unless ``trust_remote_code``: transformers would run that code (or ask on
    stdin whether to)."""
    if trust_remote_code:
        return
    for name in ("config.json", "tokenizer_config.json"):
        try:
            auto_map = json.loads((path / name).read_text(encoding="utf-8")).get("auto_map")
        except (OSError, ValueError, AttributeError):
            continue
        if auto_map:
            classes = sorted(auto_map) if isinstance(auto_map, dict) else auto_map
            raise RemoteCodeError(
                f"{path / name} maps {classes} to the model's own Python code (auto_map), which "
                "lmboost does not run unless you allow it. If you trust its source, pass "
                "--trust-remote-code (Python: trust_remote_code=True)."
            )


def resolve_dtype(dtype: str, device: str = "auto") -> str:
    """The dtype name ``dtype`` stands for: "auto" is bfloat16 on CUDA, float32 elsewhere."""
    if dtype not in DTYPE_CHOICES:
        raise ConfigError(f"Unknown dtype '{dtype}'. Choose one of: {', '.join(DTYPE_CHOICES)}.")
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
        raise ConfigError(message) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"--device {device}: this machine has no CUDA GPU. Use --device cpu (or auto)."
            )
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(
                f"--device {device}: this machine has {count} GPU(s), cuda:0 .. cuda:{count - 1}."
            )
    elif resolved.type != "cpu":
        raise ConfigError(f"--device {device} is not supported: use auto, cpu or cuda[:N].")
    return resolved


def cached_gguf_dir(gguf_path: Path, name: str | None = None) -> Path:
    """Directory of the float safetensors conversion of ``gguf_path``, converting on first use.

    ``name`` is how the user named the model (the fix for a damaged cache is ``lmboost models
    pull NAME``). A damaged cache raises :class:`CacheError`; one from before manifests is
    checked and given its manifest.
    """
    target = conversion_dir(gguf_path)
    remove_stale_conversions(target.parent)
    if target.is_dir():
        problems = verify_cache(target)
        if problems:
            raise CacheError(
                f"The converted-model cache {target} is damaged: {problems[0]}. Rebuild it with "
                f"`lmboost models pull {name or gguf_path}`."
            )
        if not (target / MANIFEST).exists():  # from before manifests, and sound: adopt it
            with contextlib.suppress(OSError):  # a read-only shared cache stays as it is
                write_manifest(target, gguf_path)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _claim_temporary(target.parent)
    try:
        _convert_gguf(gguf_path, tmp)
        write_manifest(tmp, gguf_path)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def conversion_dir(gguf_path: Path) -> Path:
    """Where the conversion of ``gguf_path`` lives in the cache (whether or not it exists yet);
    :data:`CONVERSION_VERSION` is part of the name, so a conversion made by an older, different
    recipe is never reused."""
    return cache_dir() / "models" / f"{gguf_path.stem}-{_file_key(gguf_path)}"


def write_manifest(folder: Path, source: Path) -> None:
    """Write ``folder``'s manifest (each file's size and SHA-256) atomically, as its last file."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    write_json(
        folder / MANIFEST,
        {"format": MANIFEST_FORMAT, "version": 1, "source": source.name, "files": files},
    )


def verify_cache(folder: Path, *, checksums: bool = False) -> list[str]:
    """What is wrong with the converted-model cache ``folder`` ([] when nothing is).

    Always: the manifest's files exist with their sizes, and each safetensors file is as long
    as its header says. With ``checksums``, also every file's SHA-256. A folder without a
    manifest (made before manifests existed) gets the safetensors check only.
    """
    manifest_path = folder / MANIFEST
    listed: dict[str, dict] = {}
    if manifest_path.exists():
        try:
            manifest = read_json(manifest_path)
            listed = manifest["files"]
            if manifest.get("format") != MANIFEST_FORMAT or not isinstance(listed, dict):
                raise ValueError(manifest_path)
        except (OSError, ValueError, KeyError, TypeError):
            return [f"its manifest {MANIFEST} is unreadable"]
    problems = []
    for name, facts in listed.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != facts.get("size"):
            problems.append(f"{name} has {path.stat().st_size} bytes, not {facts.get('size')}")
        elif checksums and _sha256(path) != facts.get("sha256"):
            problems.append(f"{name} does not match its SHA-256 checksum")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not problems:
        problems.append("it holds no .safetensors weights")
    for path in weights:
        problem = _safetensors_problem(path)
        if problem and not any(p.startswith(path.name) for p in problems):
            problems.append(f"{path.name} {problem}")
    if not (folder / "config.json").is_file() and "config.json is missing" not in problems:
        problems.append("config.json is missing")
    return problems


def repair_cache(gguf_path: Path) -> list[str]:
    """Check the conversion of ``gguf_path`` with checksums and remove it when damaged, so that
    the next load converts anew; returns the problems found ([] when sound or absent)."""
    target = conversion_dir(gguf_path)
    if not target.is_dir():
        return []
    problems = verify_cache(target, checksums=True)
    if problems:
        doomed = _claim_temporary(target.parent)
        os.replace(target, doomed)  # atomic: no load sees a half-deleted cache
        shutil.rmtree(doomed, ignore_errors=True)
    return problems


def remove_stale_conversions(models_dir: Path) -> list[Path]:
    """Remove the temporary folders of conversions that were killed: those whose process (on
    this host) is gone, and any older than :data:`STALE_AFTER_S`. Returns what was removed."""
    if not models_dir.is_dir():
        return []
    removed = []
    for path in models_dir.glob(f"{_CONVERTING}*"):
        owner, _, rest = path.name[len(_CONVERTING):].partition("@")
        host = rest.rpartition("-")[0]
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:  # its owner finished meanwhile
            continue
        ours = owner.isdigit() and host == socket.gethostname()
        if (ours and not _process_alive(int(owner))) or age > STALE_AFTER_S:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def cache_status(alias: str, *, checksums: bool = False) -> str:
    """"yes" when a catalog model is installed and ready to load without conversion, "damaged"
    when its cache fails :func:`verify_cache`, else "no"."""
    entry = get_entry(alias)
    if not entry.installed():
        return "no"
    if entry.kind == "hf-dir":
        return "yes"
    if entry.kind == "gguf-parts" and not entry.assembled_path().exists():
        return "no"
    target = conversion_dir(entry.locate())
    if not target.is_dir():
        return "no"
    return "damaged" if verify_cache(target, checksums=checksums) else "yes"


def is_cached(alias: str) -> bool:
    """True when a catalog model is installed and ready to load without conversion."""
    return cache_status(alias) == "yes"


def _claim_temporary(parent: Path) -> Path:
    """A new empty folder in ``parent`` named after this process, so that a later run can tell
    whether its owner is still alive."""
    prefix = f"{_CONVERTING}{os.getpid()}@{socket.gethostname()}-"
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    tmp.chmod(0o755)
    return tmp


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (its header says how long it is)."""
    if not path.is_file():
        return "is not a file"
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if 8 + header_len > size:
                raise ValueError
            header = json.loads(f.read(header_len))
        end = max(
            (t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0
        )
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"is truncated or corrupt ({size} bytes, no valid header)"
    if size != 8 + header_len + end:
        return f"is truncated or corrupt ({size} bytes; its header says {8 + header_len + end})"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


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
    facts = _gguf_tokenizer_facts(gguf_path)
    if facts.get("model") == "llama":  # SentencePiece: BPE by score, BOS as asked (spm.py)
        saved = out_dir / "tokenizer.json"
        bos = tokenizer.bos_token if facts.get("add_bos_token") else None
        repaired = as_bpe(saved.read_text(encoding="utf-8"), bos)
        if repaired is not None:
            saved.write_text(repaired, encoding="utf-8")


def _gguf_tokenizer_facts(gguf_path: Path) -> dict[str, object]:
    """The GGUF's ``tokenizer.ggml.model`` ("llama" for SentencePiece, "gpt2" for byte BPE)
    and ``add_bos_token``, where the file has them."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf_path).fields
    facts: dict[str, object] = {}
    if (field := fields.get("tokenizer.ggml.model")) is not None:
        facts["model"] = bytes(field.parts[field.data[0]]).decode()
    if (field := fields.get("tokenizer.ggml.add_bos_token")) is not None:
        facts["add_bos_token"] = bool(field.parts[field.data[0]][0])
    return facts


def _file_key(path: Path) -> str:
    """A cheap fingerprint: size plus hashes of the first and last MiB (and, for a conversion's
    folder name, :data:`CONVERSION_VERSION`)."""
    size = path.stat().st_size
    digest = hashlib.sha256(f"{size}/{CONVERSION_VERSION}".encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def _load_dir(
    path: Path, spec: str, dtype: torch.dtype, device: torch.device | str,
    trust_remote_code: bool,
) -> LoadedModel:
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_remote_code(path, trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        with warnings.catch_warnings():  # the folder's own quantization_config is the one used
            warnings.filterwarnings("ignore", message="You passed `quantization_config`")
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, trust_remote_code=trust_remote_code, **_device_map(device),
                **_decompressed(path),
            )
    except (OSError, ValueError, SafetensorError) as err:
        fix = (
            f" (a damaged cache: rebuild it with `lmboost models pull {spec}`)"
            if (path / MANIFEST).exists() else ""
        )
        raise ModelLoadError(f"Could not load a causal LM from {path}: {err}{fix}") from None
    return _ready(model, tokenizer, spec, path, device)


def _decompressed(path: Path) -> dict[str, object]:
    """For a compressed-tensors folder (``lmboost compress`` through llm-compressor): load the
    integer weights dequantized to float, activations still quantized on the fly. Kept packed,
    transformers' CPU forward multiplies float inputs by int8 weights and fails; vLLM runs the
    packed format with integer kernels."""
    try:
        quant = json.loads((path / "config.json").read_text(encoding="utf-8")).get(
            "quantization_config") or {}
    except (OSError, ValueError):
        return {}  # from_pretrained reports a missing or broken config.json
    if quant.get("quant_method") != "compressed-tensors":
        return {}
    from transformers import CompressedTensorsConfig

    return {"quantization_config": CompressedTensorsConfig(run_compressed=False)}


def _load_encoder(path: Path, spec: str, dtype: torch.dtype, device: torch.device) -> LoadedModel:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=False)
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
        if "trust_remote_code" in str(err):
            raise RemoteCodeError(
                f"'{spec}' needs its own Python code to load, which lmboost does not run unless "
                "you allow it. If you trust its source, pass --trust-remote-code (Python: "
                "trust_remote_code=True)."
            ) from None
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
