"""What compression costs: strided perplexity on a text, and forward throughput.

Perplexity follows the sliding-window recipe of the transformers guide "Perplexity of
fixed-length models": windows of ``window`` tokens start every ``stride`` tokens, and each window
scores only the tokens no earlier window scored, with the rest of the window as context. Unlike
the guide, which averages per-window mean losses, the token NLLs are summed exactly, so

    perplexity = exp(sum of NLL over scored tokens / number of scored tokens).

The first token of the text is never scored (nothing precedes it); with ``stride == window`` the
first token of each window is not scored either.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmboost.backends.hf import HFBackend
from lmboost.config import data_dir
from lmboost.errors import DataNotFoundError, EvaluationError, TaskError
from lmboost.evaluation.speed import best_time
from lmboost.tasks.datafiles import read_text

WIKITEXT2_FILES = {
    "test": "raw_hf_nonempty_crlf/wiki.test.raw",
    "valid": "tokens/valid.txt",
}


def wikitext2(split: str = "test") -> str:
    """WikiText-2 text from ``$LMBOOST_DATA/wikitext2``.

    ``test``: the raw test split (HF ``wikitext-2-raw-v1``, empty rows removed, CRLF made LF;
    see its SOURCE.md). ``valid``: the tokenized validation split (``<unk>``, ``@-@``), the only
    other split shipped, used for calibration so that it never overlaps the test text.
    """
    return wikitext2_path(split).read_text(encoding="utf-8").replace("\r\n", "\n")


def wikitext2_path(split: str = "test") -> Path:
    """The file of WikiText-2's ``split`` (see :func:`wikitext2`)."""
    if split not in WIKITEXT2_FILES:
        raise TaskError(f"WikiText-2 split must be one of {', '.join(WIKITEXT2_FILES)}.")
    path = data_dir() / "wikitext2" / WIKITEXT2_FILES[split]
    if not path.is_file():
        raise DataNotFoundError(f"WikiText-2 {split} file not found: {path}.")
    return path


def token_ids(tokenizer: Any, text: str | Path, max_tokens: int | None = None) -> torch.Tensor:
    """The token ids of ``text`` (a string, or a file when given as a Path), cut to the first
    ``max_tokens``; a 1-D tensor. The tokenizer adds its usual special tokens (e.g. BOS)."""
    if isinstance(text, Path):
        text = read_text(text)
    ids = tokenizer(text, verbose=False)["input_ids"]
    if max_tokens is not None:
        ids = ids[:max_tokens]
    return torch.tensor(ids, dtype=torch.long)


def perplexity(
    model: nn.Module, ids: torch.Tensor, *, window: int = 512, stride: int = 256
) -> dict[str, Any]:
    """Strided perplexity of a causal LM on the 1-D token ids ``ids``.

    ``window`` is capped at the model's ``max_position_embeddings``; ``stride`` must lie in
    [1, window]. Returns ``{"perplexity", "nll" (mean per scored token), "tokens" (scored),
    "windows", "window", "stride"}``.
    """
    backend = HFBackend.of_module(model)
    window = min(window, backend.context_window)
    if ids.ndim != 1 or len(ids) < 2:
        raise EvaluationError("perplexity needs at least 2 tokens of text.")
    total, count, windows = backend.rolling_nll(ids, window=window, stride=stride)
    mean = total / count
    return {
        "perplexity": math.inf if mean > 709 else math.exp(mean),  # exp overflows past 709
        "nll": mean,
        "tokens": count,
        "windows": windows,
        "window": window,
        "stride": stride,
    }


def forward_throughput(model: nn.Module, ids: torch.Tensor, repeats: int = 3) -> float:
    """Tokens per second of plain forward passes (no generation, no cache) over the B x L token
    ids ``ids``: one warm-up pass, then the best of ``repeats`` timed passes."""
    backend = HFBackend.of_module(model)
    ids = ids.to(backend.device)

    def forward() -> None:
        backend.run(ids)
        _sync(backend.device)

    return ids.numel() / best_time(forward, repeats, warmup=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
