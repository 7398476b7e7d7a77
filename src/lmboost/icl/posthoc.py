"""Calibrate stored scores without a model: the folder of an ``lmboost icl`` run, or the
per-sample log of an lm-evaluation-harness run (``--log_samples``, multiple-choice tasks).

Both write ``results.json`` and ``report.md`` exactly as ``lmboost icl`` does, with the same
per-(shots, seed) records and summary (:func:`lmboost.icl.runner.run_record`,
:func:`~lmboost.icl.runner.build_results`), plus a ``source`` entry that says where the scores
came from. An lm-eval log holds only the test documents' scores: methods that need test scores
(none, pc, bc) apply directly, those that need labelled examples (bcl, linc) take a second log
of labelled documents, and those that need other model outputs (cc, dc, hidden, knn, pmi, gc)
cannot be applied.

A run folder holds what its ``lmboost icl`` run computed: the label scores, and the further
outputs (hidden states, next-token distributions, domain-premise scores, sampled pseudo-inputs)
of the methods it ran. A method whose outputs are not stored is refused with an error that
names them; rerunning ``lmboost icl`` with that method adds them and reuses the rest.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmboost.calibration import CALIBRATORS
from lmboost.errors import CalibrationError, RunRecordError
from lmboost.evaluation.records import RunTimer, read_json
from lmboost.evaluation.store import RunStore
from lmboost.icl.lm_eval_log import LmEvalLog, find_samples_file, read_lm_eval_log
from lmboost.icl.runner import (
    NEEDS_PART,
    PART_DESCRIPTIONS,
    ScoreSet,
    build_results,
    check_methods,
    lacking_parts,
    run_record,
    write_results,
)

_LACKING = {
    "content_free": 'the label scores after content-free inputs ("N/A", "", "[MASK]") in the same '
    "prompt",
    "domain_context": "the label scores after random in-domain word strings in the same prompt",
    **{needs: PART_DESCRIPTIONS[part] for needs, part in NEEDS_PART.items()},
}


def is_run_folder(path: Path) -> bool:
    """True if ``path`` is the output folder of ``lmboost icl`` (or of an earlier calibrate)."""
    return path.is_dir() and (path / "scores").is_dir() and (path / "results.json").is_file()


def calibrate_run(folder: str | Path, methods: Sequence[str], out: str | Path | None = None
                  ) -> dict[str, Any]:
    """Recompute the results of the run in ``folder`` for ``methods`` from its stored scores.

    Writes into ``out`` (default: ``folder`` itself, as a rerun of ``lmboost icl`` with a new
    ``--calibration`` list would); a new ``out`` also gets a copy of ``scores/``. ``out`` is
    claimed while it is written (:class:`~lmboost.evaluation.store.RunStore`, lock only), so a
    run using it is not written over.
    """
    folder = Path(folder)
    check_methods(methods)
    if not is_run_folder(folder):
        raise RunRecordError(
            f"{folder} is not an lmboost icl run folder (it needs scores/ and results.json; an "
            "interrupted run has no results.json yet: rerun lmboost icl with the same settings)."
        )
    try:
        old = read_json(folder / "results.json")
    except (OSError, ValueError):  # cut short, or not JSON
        old = None
    if not isinstance(old, dict) or old.get("kind") != "icl":
        raise RunRecordError(f"{folder}/results.json is not the record of an icl run.")
    source = old.get("source") or {"kind": "stored scores", "path": str(folder)}
    if source["kind"] == "lm-eval":
        _check_needs(methods, has_labelled=bool(old["config"].get("labelled_size")))
    out = folder if out is None else Path(out)
    with RunStore(out, "calibrate", None):
        return _recalibrate(folder, old, methods, out, source)


def _recalibrate(
    folder: Path, old: dict[str, Any], methods: Sequence[str], out: Path, source: dict[str, Any]
) -> dict[str, Any]:
    """:func:`calibrate_run` in its claimed ``out`` folder."""
    labels = np.array(old["eval"]["labels"], dtype=np.int64)
    timer = RunTimer()
    records = []
    for run in old["runs"]:
        name = f"shots{run['shots']}-seed{run['seed']}.npz"
        path = folder / "scores" / name
        if not path.is_file():
            raise RunRecordError(f"{path} is missing: rerun lmboost icl with the same settings.")
        try:
            scores = ScoreSet.load(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise RunRecordError(
                f"{path} is unreadable ({type(err).__name__}: damaged): rerun lmboost icl with "
                "the same settings, which scores that run anew."
            ) from None
        if scores.fingerprint != run["fingerprint"]:
            raise RunRecordError(
                f"{path} holds other scores than {folder}/results.json records (the fingerprints "
                "differ); rerun lmboost icl with the settings you want."
            )
        lacking = lacking_parts(scores, methods)
        if lacking:
            needs = "; ".join(f"{m} needs {PART_DESCRIPTIONS[part]}" for m, part in lacking.items())
            raise CalibrationError(
                f"{path} lacks model outputs: {needs}. Rerun lmboost icl with this run's settings "
                f"(the config in {folder}/results.json) and --calibration "
                f"{','.join(methods)}: it computes only what is missing and reuses the stored "
                "scores."
            )
        records.append(run_record(scores, labels, methods, from_cache=True))
        if out.resolve() != folder.resolve():
            (out / "scores").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / "scores" / name)
    results = build_results(
        config={**old["config"], "calibration": list(methods), "out": str(out)},
        model=old["model"],
        task=old["task"],
        eval_set=old["eval"],
        pool_size=old["pool_size"],
        records=records,
        timer=timer,
        source=source,
    )
    write_results(results, out)
    return results


def calibrate_lm_eval(
    log_path: str | Path,
    methods: Sequence[str],
    out: str | Path,
    labelled: str | Path | None = None,
) -> dict[str, Any]:
    """Calibrate the test scores of an lm-evaluation-harness ``--log_samples`` file.

    ``log_path`` is a ``samples_<task>_<date>.jsonl`` file or a folder holding exactly one.
    ``labelled`` is a second such log, of labelled documents scored with the same prompt and
    choices (e.g. the task's training split): the labelled set of bcl and linc.
    """
    check_methods(methods)
    _check_needs(methods, has_labelled=labelled is not None)
    log = read_lm_eval_log(_samples_path(Path(log_path)))
    timer = RunTimer()
    lab = None
    if labelled is not None:
        lab = read_lm_eval_log(_samples_path(Path(labelled)))
        _check_labelled(log, lab)
    out = Path(out)
    with RunStore(out, "calibrate", None):
        shots = log.n_shot or 0
        digest = hashlib.sha256(log.path.read_bytes())
        if lab is not None:
            digest.update(lab.path.read_bytes())
        k = log.scores.shape[1]
        scores = ScoreSet(
            shots=shots,
            seed=0,
            fingerprint=digest.hexdigest(),
            eval=log.scores,
            content_free=None,
            domain=None,
            labelled=lab.scores if lab is not None else np.zeros((0, k)),
            labelled_labels=lab.labels if lab is not None else np.zeros(0, dtype=np.int64),
            demo_uids=[],
            labelled_uids=[f"doc{d}" for d in lab.doc_ids] if lab is not None else [],
            domain_strings=[],
        )
        scores.save(out / "scores" / f"shots{shots}-seed0.npz")
        names = log.choices or [f"option {i + 1}" for i in range(k)]
        results = build_results(
            config={
                "task": log.task,
                "out": str(out),
                "model": log.model,
                "shots": [shots],
                "seeds": 1,
                "calibration": list(methods),
                "labelled_size": len(scores.labelled),
            },
            model={"spec": log.model or "(model not recorded)", "dtype": "as lm-eval ran it",
                   "backend": "lm-evaluation-harness"},
            task={
                "name": log.task,
                "labels": names,
                "verbalizer": names,
                "template": None,
                "instruction": None,
                "eval_split": str(log.path),
                "pool_split": str(lab.path) if lab is not None else "",
                "per_example_choices": log.choices is None,
                "description": "Scores from an lm-evaluation-harness --log_samples file.",
            },
            eval_set={
                "n": len(log.labels),
                "total": len(log.labels),
                "sample": None,
                "uids": [f"doc{d}" for d in log.doc_ids],
                "labels": log.labels,
            },
            pool_size=0,
            records=[run_record(scores, log.labels, methods, from_cache=True)],
            timer=timer,
            source={
                "kind": "lm-eval",
                "path": str(log.path),
                "labelled_path": str(lab.path) if lab is not None else None,
                "n_shot": shots,
                "reported_acc": log.reported_acc,
            },
        )
        write_results(results, out)
    return results


def _samples_path(path: Path) -> Path:
    return find_samples_file(path) if path.is_dir() else path


def _check_needs(methods: Sequence[str], has_labelled: bool) -> None:
    """Raise LmboostError naming the first method an lm-eval log cannot feed."""
    for m in methods:
        needs = CALIBRATORS[m].needs
        if needs in _LACKING:
            raise CalibrationError(
                f"{m} needs {_LACKING[needs]}, and an lm-evaluation-harness log holds only the "
                f"scores of the test documents: drop {m} (none, pc and bc need only those "
                f"scores; use lmboost icl for {m})."
            )
        if needs == "labelled" and not has_labelled:
            raise CalibrationError(
                f"{m} learns from labelled examples, which a log of test documents does not "
                "provide: give a second lm-eval log of labelled documents scored with the same "
                "prompt (--labelled FILE, e.g. the task's training split), or drop it."
            )


def _check_labelled(log: LmEvalLog, lab: LmEvalLog) -> None:
    if lab.path.resolve() == log.path.resolve():
        raise CalibrationError(
            "The labelled log is the test log itself: calibrating on the test labels would "
            "leak them. Give a log of other documents (e.g. the training split)."
        )
    if lab.scores.shape[1] != log.scores.shape[1] or lab.choices != log.choices:
        raise CalibrationError(
            f"The labelled log {lab.path} has choices {lab.choices or lab.scores.shape[1]} but the "
            f"test log has {log.choices or log.scores.shape[1]}: score both with the same task."
        )
