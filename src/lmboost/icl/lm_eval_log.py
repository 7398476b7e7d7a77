"""Read the per-sample log lm-evaluation-harness writes with ``--log_samples`` for a
multiple-choice task: ``samples_<task>_<date>.jsonl``, one JSON object per document.

Each line holds ``doc_id``, the ``doc``, its ``target`` (the gold choice's index, or its text),
``arguments`` (``gen_args_<i>``: ``arg_0`` the context, ``arg_1`` " " + choice i) and
``filtered_resps`` (per choice ``[log-likelihood, is_greedy]``, both written as strings). With the
``acc_mutual_info`` metric each choice is scored a second time after an empty context; those
unconditional scores follow the conditional ones and are dropped here. ``results_<date>.json``
beside the log, when present, gives the model's name, the number of shots and lm-eval's accuracy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmboost.errors import InputFileError
from lmboost.tasks.datafiles import read_lines

_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<date>\d{4}-\d{2}-\d{2}T[\d.\-]+)\.jsonl$")


@dataclass
class LmEvalLog:
    """One task's documents as lm-evaluation-harness scored them.

    ``scores`` is N x K (log-likelihood of each choice after the document's context), ``labels``
    the gold choice indices, ``choices`` the K choice texts (without the leading delimiter) when
    every document has the same ones, else None (per-document options, as in COPA or HellaSwag).
    ``model``, ``n_shot`` and ``reported_acc`` come from ``results_<date>.json`` when found.
    """

    path: Path
    task: str
    doc_ids: list[int]
    scores: np.ndarray
    labels: np.ndarray
    choices: list[str] | None
    model: str | None = None
    n_shot: int | None = None
    reported_acc: float | None = None


def find_samples_file(folder: Path) -> Path:
    """The one ``samples_*.jsonl`` file in ``folder`` or its sub-folders (lm-eval's
    ``--output_path`` puts them in a folder named after the model)."""
    found = sorted(folder.rglob("samples_*.jsonl"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputFileError(
            f"{folder} holds no lm-evaluation-harness samples_*.jsonl file (run lm_eval with "
            "--log_samples) and no lmboost run (scores/ and results.json)."
        )
    names = ", ".join(str(p.relative_to(folder)) for p in found)
    raise InputFileError(f"{folder} holds several samples files ({names}); pass one of them.")


def read_lm_eval_log(path: str | Path) -> LmEvalLog:
    """Parse a ``--log_samples`` file of a multiple-choice task (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"lm-evaluation-harness log {path} does not exist.")
    rows: list[tuple[int, list[float], int, list[str], float | None]] = []
    filters: set[str] = set()
    for number, line in read_lines(path):  # a file that is not UTF-8: FileEncodingError
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            sample = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputFileError(f"{where}: not valid JSON ({err.msg}).") from None
        rows.append(_parse_sample(sample, where))  # checks that it is a sample (a dict) first
        filters.add(str(sample.get("filter", "none")))
    if not rows:
        raise InputFileError(f"{path} holds no samples.")
    if len(filters) > 1:
        raise InputFileError(
            f"{path} mixes filters {sorted(filters)}; a multiple-choice log has one ('none')."
        )
    rows.sort(key=lambda r: r[0])
    sizes = sorted({len(r[1]) for r in rows})
    if len(sizes) > 1:
        raise InputFileError(
            f"{path}: documents have {', '.join(map(str, sizes))} choices; calibration needs the "
            "same number of choices (one column per label) in every document."
        )
    option_lists = {tuple(r[3]) for r in rows}
    choices = [c.strip() for c in rows[0][3]] if len(option_lists) == 1 else None
    reported = [r[4] for r in rows]
    log = LmEvalLog(
        path=path,
        task=_task_name(path),
        doc_ids=[r[0] for r in rows],
        scores=np.array([r[1] for r in rows], dtype=np.float64),
        labels=np.array([r[2] for r in rows], dtype=np.int64),
        choices=choices,
    )
    if all(a is not None for a in reported):
        hits = (np.argmax(log.scores, axis=1) == log.labels).astype(float)
        if not np.array_equal(hits, np.array(reported, dtype=float)):
            raise InputFileError(
                f"{path}: the gold labels read from 'target' disagree with the per-document 'acc' "
                "lm-evaluation-harness logged; this log's targets cannot be read as choice indices."
            )
    _add_run_info(log)
    return log


def _parse_sample(
    sample: Any, where: str
) -> tuple[int, list[float], int, list[str], float | None]:
    """(doc_id, log-likelihoods, gold index, choice continuations, logged acc) of one line."""
    if not isinstance(sample, dict) or "filtered_resps" not in sample or "arguments" not in sample:
        raise InputFileError(
            f"{where}: not an lm-evaluation-harness sample (no 'arguments'/'filtered_resps'); "
            "give the samples_<task>_<date>.jsonl file that --log_samples writes."
        )
    arguments = sample["arguments"]
    if isinstance(arguments, dict):  # as written to disk: {"gen_args_0": {"arg_0": ..}, ..}
        pairs = [
            (a.get("arg_0"), a.get("arg_1"))
            for _, a in sorted(arguments.items(), key=lambda kv: int(kv[0].rsplit("_", 1)[-1]))
        ]
    else:  # as simple_evaluate returns it: [(context, continuation), ...]
        pairs = [(a[0], a[1]) for a in arguments]
    try:
        lls = [float(r[0]) for r in sample["filtered_resps"]]
    except (TypeError, ValueError, IndexError):
        raise InputFileError(
            f"{where}: 'filtered_resps' holds no log-likelihoods; only multiple-choice tasks "
            "(output_type: multiple_choice) can be calibrated."
        ) from None
    if any(not isinstance(c, str) or not isinstance(o, str) for c, o in pairs) or len(
        pairs
    ) != len(lls):
        raise InputFileError(
            f"{where}: 'arguments' are not (context, choice) pairs, one per response; only "
            "multiple-choice tasks can be calibrated."
        )
    k = len(pairs)
    if "acc_mutual_info" in sample.get("metrics", []) and k % 2 == 0 and all(
        c == "" for c, _ in pairs[k // 2 :]
    ):
        pairs, lls = pairs[: k // 2], lls[: k // 2]
    if len({c for c, _ in pairs}) > 1:
        raise InputFileError(
            f"{where}: each choice has its own context (a Winogrande-style task); the log does "
            "not record which one is gold, so it cannot be calibrated."
        )
    options = [o for _, o in pairs]
    return (
        int(sample.get("doc_id", 0)),
        lls,
        _gold(sample.get("target"), options, where),
        options,
        float(sample["acc"]) if isinstance(sample.get("acc"), (int, float)) else None,
    )


def _gold(target: Any, options: list[str], where: str) -> int:
    """The gold choice index: ``target`` as an index, or as one of the choice texts."""
    text = str(target).strip()
    if text.isdigit() and int(text) < len(options):
        return int(text)
    stripped = [o.strip() for o in options]
    if text in stripped:
        return stripped.index(text)
    raise InputFileError(
        f"{where}: target {target!r} is neither a choice index below {len(options)} nor one of "
        f"the choices {stripped}; tasks with several gold answers cannot be calibrated."
    )


def _task_name(path: Path) -> str:
    match = _NAME.match(path.name)
    return match["task"] if match else path.stem


def _add_run_info(log: LmEvalLog) -> None:
    """Fill ``model``, ``n_shot`` and ``reported_acc`` from ``results_<date>.json`` if present."""
    match = _NAME.match(log.path.name)
    if not match:
        return
    results_path = log.path.with_name(f"results_{match['date']}.json")
    if not results_path.is_file():
        return
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return
    log.model = results.get("model_name") or None
    n_shot = (results.get("n-shot") or {}).get(log.task)
    log.n_shot = int(n_shot) if isinstance(n_shot, int) else None
    acc = (results.get("results") or {}).get(log.task, {}).get("acc,none")
    log.reported_acc = float(acc) if isinstance(acc, (int, float)) else None
