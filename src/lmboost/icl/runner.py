"""In-context learning with calibration: score once per prompt, calibrate every way, record it all.

For every number of shots k and seed s, :func:`run_icl`

1. holds out ``labelled_size`` pool examples (stratified, seed s) as the labelled set and draws
   k demonstrations from the rest of the pool (``select_demonstrations``, seed s);
2. scores under the same prefix (instruction + demonstrations) the eval set (N x K), the
   content-free inputs "N/A", "", "[MASK]" (3 x K, for CC), ``n_domain`` strings of random
   in-domain words (for DC) and the labelled set (L x K, for BCL, LinC) — a :class:`ScoreSet`;
3. adds, under the same prefix, the further model outputs the chosen methods need (its
   *parts*): the last hidden states (hidden) and next-token distributions (knn) of the eval and
   labelled prompts, the choice scores after the domain premise alone (pmi), and ``n_gc``
   pseudo-inputs the model samples with the label scores after each (gc);
4. saves it as ``out/scores/shots{k}-seed{s}.npz`` with a fingerprint of everything the scores
   depend on (the model by its weights' content, :mod:`lmboost.models.identity`, with dtype
   and backend; the prompts; the examples), and one per part; a rerun reuses every file whose
   fingerprint matches, computes only the parts it lacks, and loads the model only if something
   is missing, so an interrupted run resumes and calibrators can be changed freely. Scores that
   are not finite (NaN, inf) are an error and are never stored;
5. fits each calibrator on what it ``needs``, predicts the eval set, and records accuracy,
   macro-F1, ECE, the predicted-label distribution and the reliability bins;

then writes ``out/results.json`` and ``out/report.md`` (with plots).

The folder is a :class:`~lmboost.evaluation.store.RunStore`: claimed by a lock before any
work, its settings recorded in ``out/settings.json``; those the label scores depend on
(:data:`COMPARED_SETTINGS`) must stay the same on a rerun, unless ``restart`` moves the old
content aside. Shots, seeds, calibration methods, ``n_gc`` and the batch size may change.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lmboost import __version__
from lmboost.backends import Backend
from lmboost.calibration import (
    CALIBRATORS,
    DEFAULT_METHODS,
    Calibrator,
    domain_context_strings,
    get_calibrator,
)
from lmboost.errors import CalibrationError, ConfigError, ScoringError
from lmboost.evaluation import (
    accuracy,
    confusion_matrix,
    expected_calibration_error,
    label_distribution,
    macro_f1,
    reliability_diagram,
)
from lmboost.evaluation.records import (
    RunTimer,
    load_arrays,
    save_arrays,
    to_jsonable,
    write_json,
)
from lmboost.evaluation.report import write_report
from lmboost.evaluation.store import BackendRunConfig, RunStore
from lmboost.generation import GenerationConfig
from lmboost.icl.prompts import (
    CONTENT_FREE_INPUTS,
    build_contexts,
    build_prefix,
    content_free_example,
    pseudo_context,
    pseudo_input_prompt,
    pseudo_input_stops,
    select_demonstrations,
)
from lmboost.models.identity import loaded_fingerprint
from lmboost.models.loading import DTYPE_CHOICES, LoadedModel, resolve_dtype
from lmboost.tasks import ClassificationTask, Example, get_task

EVAL_SAMPLE_SEED = 0
ECE_BINS = 10
DEMO_STRATEGIES = ("random", "balanced")
TRUNCATIONS = ("error", "left")
#: The settings a rerun into the same folder must keep (the label scores depend on them;
#: the task's prompt is compared by its template, label words and instruction).
COMPARED_SETTINGS = (
    "model", "dtype", "backend", "task", "template", "verbalizer", "instruction", "limit",
    "demo_strategy", "labelled_size", "n_domain",
)


@dataclass(kw_only=True)
class ICLConfig(BackendRunConfig):
    """Settings of one ICL + calibration experiment (the CLI's flags, one to one); ``out``,
    ``model``, ``dtype``, ``device``, ``backend``, ``tensor_parallel_size``,
    ``trust_remote_code`` and ``restart`` are every run's
    (:class:`~lmboost.evaluation.store.BackendRunConfig`).

    Attributes:
        task: registry name or path to a ``.yaml`` task file.
        shots: numbers of demonstrations to evaluate.
        seeds: number of seeds (0 .. seeds-1); each draws its own demonstrations, labelled set
            and domain strings.
        calibration: calibrator names (see ``lmboost.calibration.CALIBRATORS``; by default
            ``DEFAULT_METHODS``, those fitted on label scores alone).
        limit: evaluate a fixed (seed 0), class-stratified random sample of this many eval
            examples instead of all of them.
        demo_strategy: "random" or "balanced" demonstrations.
        labelled_size: pool examples held out per seed as the labelled set of bcl, linc,
            hidden and knn (never used as demonstrations of that seed); 0 disables them.
        n_domain: number of random in-domain strings DC is fitted on.
        n_gc: number of pseudo-inputs GC samples per prompt.
        batch_size: scoring batch size.
        truncation: "error" or "left" for prompts longer than the model's context window.
    """

    task: str
    shots: list[int] = field(default_factory=lambda: [0, 1, 4])
    seeds: int = 5
    calibration: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    limit: int | None = None
    demo_strategy: str = "random"
    labelled_size: int = 32
    n_domain: int = 20
    n_gc: int = 20
    batch_size: int = 16
    truncation: str = "error"

    def validate(self) -> None:
        """Raise LmboostError with the fix when a setting is out of range or unknown."""
        if not self.shots:
            raise ConfigError("shots is empty: give at least one number of shots, e.g. 0,1,4.")
        for k in self.shots:
            if not _is_int(k) or k < 0:
                raise ConfigError(f"shots must be non-negative integers, got {k!r}.")
        if len(set(self.shots)) != len(self.shots):
            raise ConfigError(f"shots {self.shots} lists a number twice; give each once.")
        check_methods(self.calibration)
        self.check_integers(seeds=1, n_domain=1, n_gc=1, batch_size=1, labelled_size=0)
        if self.limit is not None and (not _is_int(self.limit) or self.limit < 1):
            raise ConfigError(f"limit must be a positive integer or None, not {self.limit!r}.")
        for name, allowed in (
            ("demo_strategy", DEMO_STRATEGIES),
            ("truncation", TRUNCATIONS),
            ("dtype", DTYPE_CHOICES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}."
                )
        super().validate()


def check_methods(methods: Sequence[str]) -> None:
    """Raise LmboostError unless ``methods`` is a non-empty list of distinct calibrator names."""
    if not methods:
        raise CalibrationError(
            f"calibration is empty: give at least one of {', '.join(CALIBRATORS)}."
        )
    unknown = [m for m in methods if m not in CALIBRATORS]
    if unknown:
        raise CalibrationError(
            f"Unknown calibration method(s) {', '.join(map(repr, unknown))}; "
            f"known methods: {', '.join(CALIBRATORS)}."
        )
    if len(set(methods)) != len(methods):
        raise CalibrationError(f"calibration {list(methods)} lists a method twice.")


#: The model outputs beyond the label scores that methods need, by ``needs``: the ScoreSet
#: part each is stored as.
NEEDS_PART = {
    "hidden_states": "hidden",
    "next_token": "next_token",
    "domain_premise": "premise",
    "generated": "generated",
}

#: What each part holds, for messages.
PART_DESCRIPTIONS = {
    "hidden": "the last hidden states of the eval and labelled prompts",
    "next_token": "the next-token distributions of the eval and labelled prompts",
    "premise": "the choice scores after the domain premise alone",
    "generated": "the label scores after pseudo-inputs the model sampled",
}

# A part's arrays and string lists in a ScoreSet (and its .npz file).
_PART_FIELDS = {
    "hidden": ("hidden_eval", "hidden_labelled"),
    "next_token": ("next_token_eval", "next_token_labelled"),
    "premise": ("premise", "premise_texts"),
    "generated": ("generated", "generated_inputs"),
}
_TEXT_FIELDS = ("premise_texts", "generated_inputs")


@dataclass
class ScoreSet:
    """Label log-probabilities of one (shots, seed): all any calibrator is fitted on.

    ``content_free`` (3 x K) and ``domain`` (n_domain x K) are None for tasks whose examples carry
    their own answer options (COPA), where CC and DC are not defined. ``labelled`` is L x K with
    gold labels ``labelled_labels`` (L = 0 when no labelled set was held out).

    The parts some methods need besides are None until computed, each then recorded with its
    own fingerprint in ``part_fingerprints``: ``hidden_eval`` / ``hidden_labelled`` (N x d and
    L x d last hidden states, hidden), ``next_token_eval`` / ``next_token_labelled`` (N x V and
    L x V next-token log-probabilities in float16, knn), ``premise`` (N x K choice scores after
    each eval example's domain premise ``premise_texts``, pmi) and ``generated`` (M x K label
    scores after the sampled pseudo-inputs ``generated_inputs``, gc). ``premise`` and
    ``generated`` have no rows when the task gives no domain premise or nothing to sample after.
    """

    shots: int
    seed: int
    fingerprint: str
    eval: np.ndarray
    content_free: np.ndarray | None
    domain: np.ndarray | None
    labelled: np.ndarray
    labelled_labels: np.ndarray
    demo_uids: list[str]
    labelled_uids: list[str]
    domain_strings: list[str]
    hidden_eval: np.ndarray | None = None
    hidden_labelled: np.ndarray | None = None
    next_token_eval: np.ndarray | None = None
    next_token_labelled: np.ndarray | None = None
    premise: np.ndarray | None = None
    premise_texts: list[str] = field(default_factory=list)
    generated: np.ndarray | None = None
    generated_inputs: list[str] = field(default_factory=list)
    part_fingerprints: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the ScoreSet to an ``.npz`` file, atomically."""
        arrays = {
            "shots": self.shots,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "eval": self.eval,
            "labelled": self.labelled,
            "labelled_labels": self.labelled_labels,
            "demo_uids": np.array(self.demo_uids, dtype=str),
            "labelled_uids": np.array(self.labelled_uids, dtype=str),
            "domain_strings": np.array(self.domain_strings, dtype=str),
        }
        for name in ("content_free", "domain"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for part, fingerprint in self.part_fingerprints.items():
            arrays[f"fingerprint_{part}"] = fingerprint
            for name in _PART_FIELDS[part]:
                value = getattr(self, name)
                arrays[name] = np.array(value, dtype=str) if name in _TEXT_FIELDS else value
        save_arrays(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> ScoreSet:
        """Read a ScoreSet written by :meth:`save` (by this or an earlier version: parts it
        lacks stay None)."""
        a = load_arrays(path)
        parts: dict[str, Any] = {"part_fingerprints": {}}
        for part, names in _PART_FIELDS.items():
            if f"fingerprint_{part}" in a:
                parts["part_fingerprints"][part] = str(a[f"fingerprint_{part}"])
                for name in names:
                    parts[name] = a[name].tolist() if name in _TEXT_FIELDS else a[name]
        return cls(
            shots=int(a["shots"]),
            seed=int(a["seed"]),
            fingerprint=str(a["fingerprint"]),
            eval=a["eval"],
            content_free=a.get("content_free"),
            domain=a.get("domain"),
            labelled=a["labelled"],
            labelled_labels=a["labelled_labels"],
            demo_uids=a["demo_uids"].tolist(),
            labelled_uids=a["labelled_uids"].tolist(),
            domain_strings=a["domain_strings"].tolist(),
            **parts,
        )


@dataclass(frozen=True)
class _Plan:
    """What one (shots, seed) scores, decided without the model."""

    seed: int
    demos: list[Example]
    labelled: list[Example]
    domain_strings: list[str]
    fingerprint: str


def score_run(
    scorer: Backend,
    task: ClassificationTask,
    eval_examples: Sequence[Example],
    pool: Sequence[Example],
    shots: int,
    seed: int,
    config: ICLConfig,
    weights: str | None = None,
) -> ScoreSet:
    """Score the eval set, content-free inputs, domain strings and labelled set for one
    (shots, seed), all after the same prefix (instruction + ``shots`` demonstrations).

    ``weights`` is the fingerprint of the scorer's weights (computed from it when None).
    """
    weights = weights or loaded_fingerprint(scorer, config.model)
    plan = _plan(task, eval_examples, pool, shots, seed, config, weights)
    prefix = build_prefix(task, plan.demos)
    groups: dict[str, list[Example]] = {"eval": list(eval_examples), "labelled": plan.labelled}
    if not task.per_example_choices:
        base = eval_examples[0]
        groups["content_free"] = [content_free_example(base, t) for t in CONTENT_FREE_INPUTS]
        groups["domain"] = [content_free_example(base, s) for s in plan.domain_strings]
    examples = [ex for group in groups.values() for ex in group]
    scores = scorer.score_choices(
        build_contexts(task, prefix, examples), [task.answer_options(ex) for ex in examples]
    )
    parts: dict[str, np.ndarray] = {}
    start = 0
    for name, group in groups.items():
        parts[name] = scores[start : start + len(group)]
        start += len(group)
    return ScoreSet(
        shots=shots,
        seed=seed,
        fingerprint=plan.fingerprint,
        eval=parts["eval"],
        content_free=parts.get("content_free"),
        domain=parts.get("domain"),
        labelled=parts["labelled"],
        labelled_labels=np.array([ex.label for ex in plan.labelled], dtype=np.int64),
        demo_uids=[ex.uid for ex in plan.demos],
        labelled_uids=[ex.uid for ex in plan.labelled],
        domain_strings=plan.domain_strings,
    )


def score_parts(
    scorer: Backend,
    task: ClassificationTask,
    eval_examples: Sequence[Example],
    pool: Sequence[Example],
    scores: ScoreSet,
    parts: Sequence[str],
    config: ICLConfig,
    weights: str | None = None,
) -> None:
    """Compute the ``parts`` (see :data:`PART_DESCRIPTIONS`) of one (shots, seed) under its
    prefix and set them, with their fingerprints, on ``scores``.

    hidden and next_token come from one pass over the eval and labelled prompts
    (:meth:`Backend.prompt_states`); premise scores each eval example's choices after the prefix
    and its domain premise; generated samples ``config.n_gc`` pseudo-inputs after the prefix
    (temperature 1, no top-k or top-p, seed = the run's seed, at most as many tokens as the
    longest eval input) and scores the label words after each. ``weights`` is as in
    :func:`score_run`.
    """
    weights = weights or loaded_fingerprint(scorer, config.model)
    plan = _plan(task, eval_examples, pool, scores.shots, scores.seed, config, weights)
    prefix = build_prefix(task, plan.demos)
    k = scores.eval.shape[1]
    n = len(eval_examples)
    if "hidden" in parts or "next_token" in parts:
        contexts = build_contexts(task, prefix, [*eval_examples, *plan.labelled])
        states = scorer.prompt_states(
            contexts, hidden="hidden" in parts, logprobs="next_token" in parts
        )
        if states.hidden is not None:
            hidden = states.hidden.numpy()
            scores.hidden_eval, scores.hidden_labelled = hidden[:n], hidden[n:]
        if states.logprobs is not None:
            low = np.finfo(np.float16).min  # a zero probability stays finite in float16
            logprobs = np.maximum(states.logprobs.numpy(), low).astype(np.float16)
            scores.next_token_eval, scores.next_token_labelled = logprobs[:n], logprobs[n:]
    if "premise" in parts:
        texts = [task.domain_premise_text(ex) for ex in eval_examples]
        scores.premise_texts = texts
        scores.premise = (
            scorer.score_choices(
                [prefix + t for t in texts], [task.answer_options(ex) for ex in eval_examples]
            )
            if all(texts)
            else np.zeros((0, k))
        )
    if "generated" in parts:
        prompt = pseudo_input_prompt(task, prefix)
        samples: list[str] = []
        if prompt:
            longest = max(
                len(scorer.tokenizer(task.render(ex), add_special_tokens=False)["input_ids"])
                for ex in eval_examples
            )
            sampling = GenerationConfig(
                max_new_tokens=longest, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                stop=pseudo_input_stops(task), seed=scores.seed,
            )
            (samples,) = scorer.generate([prompt], sampling, n=config.n_gc, chat=False)
        scores.generated_inputs = samples
        scores.generated = (
            scorer.score_choices(
                [pseudo_context(task, prefix, t) for t in samples],
                task.answer_options(eval_examples[0]),
            )
            if samples
            else np.zeros((0, k))
        )
    for part in parts:
        scores.part_fingerprints[part] = _part_fingerprint(part, task, eval_examples, plan, config)


def run_icl(
    config: ICLConfig, progress: bool = True, loaded: Backend | LoadedModel | None = None
) -> dict[str, Any]:
    """Run the experiment ``config`` describes; returns the results object, exactly as written
    to ``out/results.json`` (JSON types only); the report goes to ``out/report.md``.

    ``loaded`` scores with a model already in memory (a backend, or a loaded transformers model,
    a compressed one say); ``config.model`` then only names it in the record, and the
    fingerprints key its weights as they are in memory. Otherwise the model is loaded on
    ``config.backend`` only if some scores or parts are not stored yet (or, for a hub id not
    downloaded yet, to fingerprint its weights).
    """
    config.validate()
    timer = RunTimer()
    task = get_task(config.task)
    all_eval = task.load_eval()
    eval_examples = eval_sample(all_eval, config.limit)
    pool = task.load_pool() if task.has_pool or max(config.shots) > 0 else []
    _check_pool(pool, config)
    out = Path(config.out)
    with RunStore(out, "icl", _stored_settings(config, task), compare=COMPARED_SETTINGS,
                  restart=config.restart) as store:
        options = {"batch_size": config.batch_size, "truncation": config.truncation,
                   "progress": progress}
        backend, weights = config.open_with_weights(loaded, **options)
        scorer = functools.cache(lambda: backend or config.open_backend(**options))
        labels = np.array([ex.label for ex in eval_examples], dtype=np.int64)
        runs = [(k, s) for k in config.shots for s in range(config.seeds)]
        records = []
        for shots, seed in tqdm(runs, desc="icl runs", unit="run", disable=not progress):
            path = store.path("scores", f"shots{shots}-seed{seed}.npz")
            plan = _plan(task, eval_examples, pool, shots, seed, config, weights)
            scores = _cached(path, plan.fingerprint)
            computed: list[str] = []
            if scores is None:
                scores = score_run(
                    scorer(), task, eval_examples, pool, shots, seed, config, weights
                )
                _check_finite(scores, ("eval", "content_free", "domain", "labelled"))
                scores.save(path)
                computed.append("scores")
            missing = [
                part for part in required_parts(scores, config.calibration)
                if scores.part_fingerprints.get(part)
                != _part_fingerprint(part, task, eval_examples, plan, config)
            ]
            if missing:
                score_parts(scorer(), task, eval_examples, pool, scores, missing, config, weights)
                _check_finite(scores, [name for part in missing for name in _PART_FIELDS[part]])
                scores.save(path)
                computed += missing
            records.append(
                run_record(scores, labels, config.calibration, "scores" not in computed, computed)
            )
        results = _results(config, task, weights, all_eval, eval_examples, labels, pool,
                           records, timer)
        write_results(results, out)
    return results


def _results(
    config: ICLConfig,
    task: ClassificationTask,
    weights: str,
    all_eval: list[Example],
    eval_examples: list[Example],
    labels: np.ndarray,
    pool: Sequence[Example],
    records: list[dict[str, Any]],
    timer: RunTimer,
) -> dict[str, Any]:
    """The results object of :func:`run_icl`."""
    return build_results(
        config=config.to_dict(),
        model={
            "spec": config.model, "dtype": resolve_dtype(config.dtype, config.device),
            "backend": config.backend,
            "weights": weights,
        },
        task=_task_info(task),
        eval_set={
            "n": len(eval_examples),
            "total": len(all_eval),
            "sample": _sample_note(len(eval_examples), len(all_eval)),
            "uids": [ex.uid for ex in eval_examples],
            "labels": labels,
        },
        pool_size=len(pool),
        records=records,
        timer=timer,
    )


def build_results(
    *,
    config: dict[str, Any],
    model: dict[str, Any],
    task: dict[str, Any],
    eval_set: dict[str, Any],
    pool_size: int,
    records: list[dict[str, Any]],
    timer: RunTimer,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results object of an ICL run (JSON types only) from its parts and per-run records
    (:func:`run_record`); ``config["calibration"]`` and ``config["shots"]`` order the summary.
    ``source`` says where stored scores came from when they were recalibrated without a model.
    """
    methods = config["calibration"]
    return to_jsonable({
        "kind": "icl",
        "lmboost_version": __version__,
        **({"source": source} if source is not None else {}),
        "config": config,
        "model": model,
        "task": task,
        "eval": eval_set,
        "pool_size": pool_size,
        "methods": {m: _method_info(get_calibrator(m)) for m in methods},
        "runs": records,
        "summary": _summarise(records, methods, config["shots"]),
        **timer.fields(),
    })


def write_results(results: dict[str, Any], out: Path) -> None:
    """Write ``out/results.json`` and ``out/report.md`` (with its plots)."""
    write_json(out / "results.json", results)
    write_report(results, out)


def _stored_settings(config: ICLConfig, task: ClassificationTask) -> dict[str, Any]:
    """What ``settings.json`` records: the config (the dtype resolved) and the task — its name,
    however it was given (registry name, task file, flags), and its prompt."""
    settings = config.settings()
    return settings | {
        "dtype": resolve_dtype(config.dtype, config.device),
        "task": task.name,
        "template": task.template,
        "verbalizer": task.verbalizer,
        "instruction": task.instruction,
    }


def _check_finite(scores: ScoreSet, names: Sequence[str]) -> None:
    """Raise LmboostError, before anything is stored, when a model output is NaN or inf."""
    bad = [
        name for name in names
        if isinstance(getattr(scores, name), np.ndarray)
        and getattr(scores, name).dtype.kind == "f"
        and not np.isfinite(getattr(scores, name)).all()
    ]
    if bad:
        raise ScoringError(
            f"The model gave non-finite values (NaN or inf) in its {', '.join(bad)} scores at "
            f"{scores.shots} shots, seed {scores.seed}; nothing is stored for them. Check the "
            "model's weights (float16 overflows? try --dtype float32); a rerun with a sound "
            "model scores them anew."
        )


# --------------------------------------------------------------------------- planning


def _plan(
    task: ClassificationTask,
    eval_examples: Sequence[Example],
    pool: Sequence[Example],
    shots: int,
    seed: int,
    config: ICLConfig,
    weights: str,
) -> _Plan:
    n_labelled = _labelled_count(pool, config)
    chosen = _stratified_indices([ex.label for ex in pool], n_labelled, seed)
    labelled = [ex for i, ex in enumerate(pool) if i in chosen]
    rest = [ex for i, ex in enumerate(pool) if i not in chosen]
    demos = select_demonstrations(rest, shots, seed, config.demo_strategy)
    domain: list[str] = []
    if not task.per_example_choices:
        texts = [" ".join(ex.fields[f] for f in task.template_fields) for ex in eval_examples]
        domain = domain_context_strings(texts, n=config.n_domain, seed=seed)
    payload = {
        "weights": weights,
        "dtype": resolve_dtype(config.dtype, config.device),
        **({"backend": config.backend} if config.backend != "hf" else {}),
        "task": task.name,
        "template": task.template,
        "verbalizer": task.verbalizer,
        "instruction": task.instruction,
        "separator": task.demo_separator,
        "demos": [_identity(task, ex) for ex in demos],
        "eval": [_identity(task, ex) for ex in eval_examples],
        "labelled": [_identity(task, ex) for ex in labelled],
        "content_free": [] if task.per_example_choices else list(CONTENT_FREE_INPUTS),
        "domain": domain,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return _Plan(seed, demos, labelled, domain, digest)


def _part_fingerprint(
    part: str,
    task: ClassificationTask,
    eval_examples: Sequence[Example],
    plan: _Plan,
    config: ICLConfig,
) -> str:
    """The fingerprint of one part: the scores' fingerprint (model, prompts, examples) and what
    the part adds to it."""
    payload: dict[str, Any] = {"scores": plan.fingerprint, "part": part}
    if part == "next_token":
        payload["dtype"] = "float16"
    elif part == "premise":
        payload["premises"] = [task.domain_premise_text(ex) for ex in eval_examples]
    elif part == "generated":
        prefix = build_prefix(task, plan.demos)
        payload.update(
            n=config.n_gc,
            prompt=pseudo_input_prompt(task, prefix),
            stop=list(pseudo_input_stops(task)),
            tail=task.template_ends[1],
            sampling="temperature 1, top_k 0, top_p 1, seed of the run, longest eval input",
            seed=plan.seed,
        )
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _identity(task: ClassificationTask, ex: Example) -> list:
    """What of an example reaches a prompt: its uid, rendered input, label and options."""
    return [ex.uid, task.render(ex), ex.label, list(ex.choices or [])]


def _stratified_indices(labels: Sequence[int], n: int, seed: int) -> set[int]:
    """``n`` indices drawn without replacement, each class in proportion to its frequency
    (largest-remainder rounding), by ``random.Random(seed)``."""
    if n >= len(labels):
        return set(range(len(labels)))
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    exact = {c: n * len(idx) / len(labels) for c, idx in by_label.items()}
    quota = {c: int(q) for c, q in exact.items()}
    for c in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[: n - sum(quota.values())]:
        quota[c] += 1
    rng = random.Random(seed)
    return {i for c in sorted(by_label) for i in rng.sample(by_label[c], quota[c])}


def eval_sample(examples: list[Example], limit: int | None) -> list[Example]:
    """The fixed, class-stratified sample of ``limit`` eval examples, in file order: the
    examples ``run_icl`` (``lmboost icl --limit``) scores (all of them when ``limit`` is None or
    at least their number)."""
    if limit is None or limit >= len(examples):
        return examples
    chosen = _stratified_indices([ex.label for ex in examples], limit, EVAL_SAMPLE_SEED)
    return [ex for i, ex in enumerate(examples) if i in chosen]


def _sample_note(n: int, total: int) -> str | None:
    if n == total:
        return None
    return (
        f"a fixed class-stratified random sample (seed {EVAL_SAMPLE_SEED}) of {n} of the "
        f"{total} eval examples"
    )


def _labelled_count(pool: Sequence[Example], config: ICLConfig) -> int:
    """Size of the labelled set (bcl, linc, hidden, knn): ``labelled_size``, capped so that the
    largest shot count still finds its demonstrations in the rest of the pool (FewGLUE pools
    hold only 32)."""
    return max(0, min(config.labelled_size, len(pool) - max(config.shots)))


def _check_pool(pool: Sequence[Example], config: ICLConfig) -> None:
    if max(config.shots) > len(pool):
        raise ConfigError(
            f"{max(config.shots)} shots need {max(config.shots)} demonstrations, but the pool "
            f"holds {len(pool)} examples: lower shots."
        )
    held = _labelled_count(pool, config)
    if held < config.labelled_size:
        warnings.warn(
            f"The labelled set (bcl, linc, hidden, knn) shrinks from {config.labelled_size} to "
            f"{held} examples so that {max(config.shots)} demonstrations remain in the "
            f"{len(pool)}-example pool.",
            stacklevel=3,
        )


def _cached(path: Path, fingerprint: str) -> ScoreSet | None:
    """The ScoreSet stored at ``path`` if it exists and has this fingerprint, else None (an
    unreadable file is scored anew, with a warning that names it)."""
    if not path.is_file():
        return None
    try:
        scores = ScoreSet.load(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(
            f"{path} is unreadable ({type(err).__name__}: damaged, or from an older lmboost); "
            "its scores are computed anew and replace it.",
            stacklevel=3,
        )
        return None
    return scores if scores.fingerprint == fingerprint else None


# --------------------------------------------------------------------------- calibration


# What each calibrator's ``needs`` is fitted on: (positional args, keyword args).
_FIT_DATA: dict[str, Callable[[ScoreSet], tuple[tuple, dict]]] = {
    "nothing": lambda s: ((s.eval,), {}),
    "test": lambda s: ((s.eval,), {}),
    "content_free": lambda s: ((s.content_free,), {}),
    "domain_context": lambda s: ((s.domain,), {}),
    "labelled": lambda s: ((s.labelled, s.labelled_labels), {"X_unlabelled": s.eval}),
    "hidden_states": lambda s: (
        (s.hidden_labelled, s.labelled_labels), {"n_classes": s.eval.shape[1]}
    ),
    "next_token": lambda s: (
        (s.next_token_labelled, s.labelled_labels), {"n_classes": s.eval.shape[1]}
    ),
    "domain_premise": lambda s: ((s.premise,), {}),
    "generated": lambda s: ((s.generated,), {}),
}

# What the eval set is predicted from, where it is not its label scores.
_EVAL_INPUT: dict[str, Callable[[ScoreSet], np.ndarray]] = {
    "hidden_states": lambda s: s.hidden_eval,
    "next_token": lambda s: s.next_token_eval,
}

_NO_OPTIONS = (
    "not applicable: the task's examples carry their own answer options, so a {} has no "
    "options to score"
)
_EMPTY_PART = {
    "premise": "not applicable: the template has no text after its last field (and the task "
    "sets no domain_premise) to serve as the domain premise",
    "generated": "not applicable: nothing to sample pseudo-inputs after (no instruction, no "
    "demonstrations, and the template starts with an input field)",
}


def _lacking_input(needs: str, scores: ScoreSet) -> str | None:
    """Why the task or the settings give a calibrator that needs ``needs`` nothing to be fitted
    on (None if they do)."""
    if needs in ("content_free", "domain_context") and scores.content_free is None:
        return _NO_OPTIONS.format("content-free or domain-string input")
    if needs == "generated" and scores.content_free is None:
        return _NO_OPTIONS.format("sampled pseudo-input")
    if needs in ("labelled", "hidden_states", "next_token") and len(scores.labelled) == 0:
        return "not applicable: no labelled set (no pool, or a labelled-set size of 0)"
    return None


def _not_applicable(needs: str, scores: ScoreSet) -> str | None:
    """Why a calibrator that needs ``needs`` cannot be fitted on ``scores`` (None if it can)."""
    reason = _lacking_input(needs, scores)
    part = NEEDS_PART.get(needs)
    if reason is None and part in _EMPTY_PART and len(getattr(scores, part)) == 0:
        return _EMPTY_PART[part]
    return reason


def required_parts(scores: ScoreSet, methods: Sequence[str]) -> list[str]:
    """The parts ``methods`` need on ``scores`` (those not ruled out by the task or settings)."""
    needs = [get_calibrator(m).needs for m in methods]
    return list(dict.fromkeys(
        NEEDS_PART[n] for n in needs if n in NEEDS_PART and _lacking_input(n, scores) is None
    ))


def lacking_parts(scores: ScoreSet, methods: Sequence[str]) -> dict[str, str]:
    """Method -> the part it needs that ``scores`` does not hold (methods lacking none are left
    out)."""
    lacking = {}
    for method in methods:
        for part in required_parts(scores, [method]):
            if part not in scores.part_fingerprints:
                lacking[method] = part
    return lacking


def _evaluate(method: str, scores: ScoreSet, y: np.ndarray) -> dict[str, Any]:
    """Fit ``method`` on what it needs, predict the eval set and measure."""
    calibrator = get_calibrator(method)
    reason = _not_applicable(calibrator.needs, scores)
    if reason:
        return {"status": "n/a", "reason": reason}
    args, kwargs = _FIT_DATA[calibrator.needs](scores)
    calibrator.fit(*args, **kwargs)
    inputs = _EVAL_INPUT.get(calibrator.needs, lambda s: s.eval)(scores)
    proba = calibrator.predict_proba(inputs)
    pred = calibrator.predict(inputs)
    k = scores.eval.shape[1]
    bins = reliability_diagram(proba, y, ECE_BINS)
    metrics = {
        "status": "ok",
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, n_classes=k),
        "ece": expected_calibration_error(proba, y, ECE_BINS),
        "label_distribution": label_distribution(pred, k),
        "confusion": confusion_matrix(y, pred, k),
        "reliability": {key: bins[key] for key in ("confidence", "accuracy", "count")},
    }
    if hasattr(calibrator, "gamma_"):
        metrics["gamma"] = float(calibrator.gamma_)
    if hasattr(calibrator, "n_labelled_"):
        metrics["n_labelled"] = int(calibrator.n_labelled_)
    return metrics


def run_record(
    scores: ScoreSet,
    y: np.ndarray,
    methods: Sequence[str],
    from_cache: bool,
    computed: Sequence[str] = (),
) -> dict[str, Any]:
    """Everything about one (shots, seed): what was scored, the scores and each method's metrics.

    ``from_cache``: the label scores were read from the stored file; ``computed``: what this run
    computed with the model ("scores" and part names). Hidden states and next-token
    distributions stay in the ``.npz`` file only (they are large).
    """
    return {
        "shots": scores.shots,
        "seed": scores.seed,
        "fingerprint": scores.fingerprint,
        "scores_from_cache": from_cache,
        "computed": list(computed),
        "demo_uids": scores.demo_uids,
        "labelled_uids": scores.labelled_uids,
        "labelled_labels": scores.labelled_labels,
        "domain_strings": scores.domain_strings,
        "premise_texts": list(dict.fromkeys(scores.premise_texts)),
        "generated_inputs": scores.generated_inputs,
        "scores": {
            "eval": scores.eval,
            "content_free": scores.content_free,
            "domain": scores.domain,
            "labelled": scores.labelled,
            "premise": scores.premise,
            "generated": scores.generated,
        },
        "metrics": {m: _evaluate(m, scores, y) for m in methods},
    }


def _method_info(calibrator: Calibrator) -> dict[str, Any]:
    return {
        "needs": calibrator.needs,
        "space": calibrator.space,
        "extra_forward_passes": calibrator.extra_forward_passes,
        "params": calibrator.get_params(),
    }


def _task_info(task: ClassificationTask) -> dict[str, Any]:
    return {
        "name": task.name,
        "labels": task.labels,
        "verbalizer": task.verbalizer,
        "template": task.template,
        "instruction": task.instruction,
        "eval_split": task.eval_split,
        "pool_split": task.pool_split,
        "per_example_choices": task.per_example_choices,
        "description": task.description,
    }


# What a method's inputs depend on, besides the model and the task: equal values in every seed
# mean the method saw the very same scores in every seed (at 0 shots no demonstrations differ).
_DEPENDS_ON = {
    "nothing": ("demo_uids",),
    "test": ("demo_uids",),
    "content_free": ("demo_uids",),
    "domain_context": ("demo_uids", "domain_strings"),
    "labelled": ("demo_uids", "labelled_uids"),
    "hidden_states": ("demo_uids", "labelled_uids"),
    "next_token": ("demo_uids", "labelled_uids"),
    "domain_premise": ("demo_uids",),
    "generated": ("demo_uids", "generated_inputs"),
}


def _summarise(
    records: list[dict[str, Any]], methods: Sequence[str], shots: Sequence[int]
) -> list[dict[str, Any]]:
    """One row per (method, shots): mean and population std (ddof=0) over seeds.

    ``same_every_seed`` is True when there are several seeds but the method's inputs were the
    same in each (the seeds then repeat one measurement rather than vary it).
    """
    rows = []
    for method in methods:
        depends = _DEPENDS_ON[get_calibrator(method).needs]
        for k in shots:
            at_k = [r for r in records if r["shots"] == k]
            runs = [r["metrics"][method] for r in at_k]
            row: dict[str, Any] = {"method": method, "shots": k, "n_seeds": len(runs)}
            if runs[0]["status"] != "ok":
                rows.append({**row, "status": "n/a", "reason": runs[0]["reason"]})
                continue
            row["status"] = "ok"
            row["same_every_seed"] = len(at_k) > 1 and all(
                list(r[key]) == list(at_k[0][key]) for r in at_k for key in depends
            )
            for metric in ("accuracy", "macro_f1", "ece"):
                values = np.array([r[metric] for r in runs])
                row[metric] = {"mean": float(values.mean()), "std": float(values.std())}
            row["label_distribution"] = np.mean([r["label_distribution"] for r in runs], axis=0)
            if "gamma" in runs[0]:
                row["gamma"] = [r["gamma"] for r in runs]
            if "n_labelled" in runs[0]:
                row["n_labelled"] = [r["n_labelled"] for r in runs]
            rows.append(row)
    return rows


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
