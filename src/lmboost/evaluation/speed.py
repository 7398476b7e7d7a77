"""How fast, and how close to the machine's limit: timing a call, and model FLOP utilisation.

``timed(fn, ...)`` times one call and records the 1-minute load average before and after (a
busy machine explains a slow number); ``best_time(fn, repeats)`` is the best of ``repeats``
timed calls after untimed warm-ups. The utilisation estimate compares the arithmetic a forward
pass must do with the machine's own measured matmul rate::

    utilisation = 2 * non-embedding parameters * tokens run / seconds / matmul peak

(two FLOPs, a multiply and an add, per weight per token; attention's own FLOPs are left out,
small for short contexts). :func:`matmul_peak` measures the peak for a dtype on this machine.
:func:`versus_reference` compares scorers' speed and label scores with a reference scorer's,
:func:`versus_table` renders its rows.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from lmboost.evaluation.report import markdown_table, percent

T = TypeVar("T")


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, dict[str, Any]]:
    """``fn(*args, **kwargs)`` and ``{"seconds", "load_average": [before, after]}`` of that one
    call (the 1-minute load average; None where the OS has none)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    after = os.getloadavg()[0] if load is not None else None
    return result, {"seconds": seconds, "load_average": [load, after]}


def best_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """The fewest seconds one call of ``fn()`` took over ``repeats`` timed calls, after
    ``warmup`` untimed ones."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, not {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5) -> float:
    """This machine's measured matmul rate (FLOP/s) for ``dtype`` on the CPU: a ``size`` x
    ``size`` product, best of ``repeats``."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    return 2 * size**3 / best_time(lambda: torch.matmul(a, b), repeats)


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside the input embedding, and outside the output head when it is a separate
    matrix (a head tied to the embedding is counted once, as the embedding): the weights every
    token runs through, as the head runs at few positions when scoring."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    untied = head is not None and head.weight.data_ptr() != embedding.data_ptr()
    total = sum(p.numel() for p in model.parameters())
    return total - embedding.numel() - (head.weight.numel() if untied else 0)


def flops_utilization(parameters: int, tokens: int, seconds: float, peak: float) -> float:
    """The share of ``peak`` FLOP/s that ``tokens`` forward tokens through ``parameters``
    weights in ``seconds`` amount to (see the module docstring)."""
    if seconds <= 0 or peak <= 0:
        raise ValueError(f"seconds and peak must be > 0, not {seconds} and {peak}")
    return 2 * parameters * tokens / seconds / peak


def versus_reference(records: dict[str, dict], labels: np.ndarray,
                     reference: str) -> list[list]:
    """One row per method of ``records`` (each with ``scores``, N x K, ``examples_per_second``
    and optionally ``peak_share``), in their order: method, examples/s, then against
    ``reference``'s record (None for it, or without it) the speed-up, the agreement of
    predictions and the largest absolute score difference, then accuracy on ``labels`` and the
    peak share."""
    preds = {m: np.asarray(r["scores"]).argmax(1) for m, r in records.items()}
    base, rows = records.get(reference), []
    for m, r in records.items():
        versus = base is not None and m != reference
        diff = np.abs(np.asarray(r["scores"]) - np.asarray(base["scores"])) if versus else None
        rows.append([m, r["examples_per_second"],
                     base["examples_per_second"] / r["examples_per_second"] if versus else None,
                     float((preds[m] == preds[reference]).mean()) if versus else None,
                     float(diff.max()) if versus else None,
                     float((preds[m] == labels).mean()), r.get("peak_share")])
    return rows


def versus_table(rows: list[list], reference: str, keys: tuple[str, ...] = ()) -> str:
    """The Markdown table of :func:`versus_reference` rows, each led by values for ``keys``
    columns (e.g. ``("shots",)``)."""
    speed_up = f"{reference} speed-up"
    columns = [*keys, "method", "ex/s", speed_up, "agreement", "max abs dlogp", "accuracy",
               "peak share"]
    return markdown_table(
        rows, columns,
        {"ex/s": ".1f", speed_up: "{:.1f}x", "agreement": lambda v: percent(v, 2),
         "max abs dlogp": ".1e", "accuracy": ".3f", "peak share": lambda v: percent(v, 0)},
        align=dict.fromkeys(range(len(columns)), "left"))
