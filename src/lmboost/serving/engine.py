"""The model side of ``lmboost serve``: one backend, and per task its prompt prefix (pinned in the
backend's prefix cache), its label words and its online calibrator. Everything here runs on the
server's one model thread; the HTTP side (:mod:`lmboost.serving.app`) batches requests into it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from lmboost.backends import Backend
from lmboost.calibration import (
    BatchCalibrationLearned,
    ContextualCalibration,
    DomainContextCalibration,
    StreamingBatchCalibration,
    domain_context_strings,
    normalise,
)
from lmboost.errors import RequestError, ScoringError
from lmboost.evaluation.records import read_json, write_json
from lmboost.icl.prompts import (
    CONTENT_FREE_INPUTS,
    build_contexts,
    build_prefix,
    content_free_example,
    select_demonstrations,
)
from lmboost.serving.config import ServeConfigError, ServedTask
from lmboost.tasks import Example, get_task

log = logging.getLogger("lmboost.serve")

N_DOMAIN = 20  # DC's random in-domain strings, as in `lmboost icl`


@dataclass
class Answer:
    """One input's answer: the label, probabilities without and (once ready) with the
    calibrator, and the calibrator's state after this input's batch."""

    label: str
    uncalibrated: dict[str, float]
    calibrated: dict[str, float] | None
    calibrator: dict[str, Any]


class TaskEngine:
    """One served task: its fixed prompt (demonstrations drawn once by seed) and calibrator.

    bc and bcl follow BC's streaming protocol: each batch first updates the running estimate
    of the label prior (:class:`StreamingBatchCalibration.partial_fit`), then is calibrated with
    it. Their state is saved to ``state_path`` (atomically) every ``save_every`` inputs and by
    :meth:`save`, and restored at start-up when it was saved for the same model, prompt and
    calibrator (its ``fingerprint``); cc, dc and bcl's strength are fitted at start-up.
    """

    def __init__(
        self, spec: ServedTask, backend: Backend, state_path: Path, save_every: int
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.task = get_task(spec.task)
        self.name = spec.name
        if self.task.per_example_choices:
            raise ServeConfigError(
                f"Task {self.name!r} carries its answer options per example (like COPA); the "
                "server classifies tasks with one set of label words. Serve another task."
            )
        self.fields = self.task.template_fields
        self.labels = list(self.task.labels)
        self.state_path = state_path
        self.save_every = save_every
        self._lock = threading.Lock()
        self._unsaved = 0
        pool = self.task.load_pool() if self.task.has_pool else []
        rng = random.Random(spec.seed)
        order = rng.sample(range(len(pool)), len(pool))
        demos = select_demonstrations(pool, spec.shots, spec.seed) if spec.shots else []
        taken = {id(ex) for ex in demos}
        rest = [pool[i] for i in order if id(pool[i]) not in taken]
        self.prefix = build_prefix(self.task, demos)
        self.options = self.task.answer_options(Example(fields={}, label=0))
        base = Example(fields=dict.fromkeys(self.fields, ""), label=0)
        self.prefix_tokens = backend.pin_prefix(self._contexts(
            [content_free_example(base, t) for t in CONTENT_FREE_INPUTS[::2]]
        ))
        self.fingerprint = self._fingerprint(demos)
        self.gamma = 1.0
        self.fixed: ContextualCalibration | DomainContextCalibration | None = None
        self.stream = StreamingBatchCalibration(momentum=spec.momentum)
        self._fit_at_start(base, rest)

    # ------------------------------------------------------------------ start-up
    def _fingerprint(self, demos: Sequence[Example]) -> str:
        payload = {
            "backend": self.backend.describe(),
            "task": self.name,
            "prefix": self.prefix,
            "template": self.task.template,
            "options": self.options,
            "calibrator": self.spec.calibrator,
            "momentum": self.spec.momentum,
            "demos": [ex.uid for ex in demos],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _fit_at_start(self, base: Example, rest: list[Example]) -> None:
        method = self.spec.calibrator
        if method == "cc":
            cf = [content_free_example(base, t) for t in CONTENT_FREE_INPUTS]
            self.fixed = ContextualCalibration().fit(self.score(cf))
        elif method == "dc":
            texts = [" ".join(ex.fields[f] for f in self.fields) for ex in rest[:200]]
            if not texts:
                raise ServeConfigError(f"Task {self.name!r}: dc needs a pool to draw words from.")
            strings = domain_context_strings(texts, n=N_DOMAIN, seed=self.spec.seed)
            self.fixed = DomainContextCalibration().fit(
                self.score([content_free_example(base, s) for s in strings])
            )
        if method not in ("bc", "bcl"):
            return
        warm = rest[: self.spec.warm_start]
        labelled = rest[self.spec.warm_start : self.spec.warm_start + self.spec.labelled]
        if len(warm) < self.spec.warm_start or (method == "bcl" and len(labelled) < 2):
            raise ServeConfigError(
                f"Task {self.name!r}: its pool holds {len(rest)} examples besides the "
                f"demonstrations, fewer than warm_start ({self.spec.warm_start})"
                + (f" + labelled ({self.spec.labelled})" if method == "bcl" else "")
                + ": lower them."
            )
        warm_scores = self.score(warm) if warm else None
        if method == "bcl":
            scores = self.score(labelled)
            y = np.array([ex.label for ex in labelled])
            fitted = BatchCalibrationLearned().fit(
                scores, y, X_unlabelled=warm_scores if warm_scores is not None else scores
            )
            self.gamma = float(fitted.gamma_)
        if not self._restore() and warm_scores is not None:
            self.stream.partial_fit(warm_scores)
            self.save()

    def _restore(self) -> bool:
        """Load the saved running estimate if it belongs to this model, prompt and calibrator."""
        if not self.state_path.is_file():
            return False
        try:
            state = read_json(self.state_path)
            mean = np.asarray(state["mean"], dtype=np.float64)
            n_seen = int(state["n_seen"])
            same = state["fingerprint"] == self.fingerprint and mean.shape == (len(self.labels),)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable calibrator state %s (%s)", self.state_path, err)
            return False
        if not same:
            log.warning(
                "calibrator state %s was saved for another model, prompt or calibrator; "
                "starting a new estimate (the old file is kept as %s.old)",
                self.state_path, self.state_path.name,
            )
            self.state_path.replace(self.state_path.with_suffix(".json.old"))
            return False
        self.stream.mean_, self.stream.n_seen_, self.stream.n_classes_ = mean, n_seen, len(mean)
        log.info("task %s: restored its BC estimate over %d inputs", self.name, n_seen)
        return True

    # ------------------------------------------------------------------ serving
    def examples(self, inputs: Sequence[str | dict[str, str]]) -> list[Example]:
        """Inputs as examples: a string fills the template's one field; a mapping gives each."""
        out = []
        for i, value in enumerate(inputs):
            if isinstance(value, str):
                if len(self.fields) != 1:
                    raise RequestError(
                        f"inputs[{i}]: task {self.name!r} takes the fields {self.fields}; send "
                        "an object with each, e.g. " + json.dumps(dict.fromkeys(self.fields, "..."))
                    )
                value = {self.fields[0]: value}
            missing = [f for f in self.fields if f not in value]
            extra = sorted(set(value) - set(self.fields))
            if missing or extra:
                raise RequestError(
                    f"inputs[{i}]: task {self.name!r} takes the fields {self.fields}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; unknown {extra}" if extra else "") + "."
                )
            out.append(Example(fields=dict(value), label=0))
        return out

    def _contexts(self, examples: Sequence[Example]) -> list[str]:
        return build_contexts(self.task, self.prefix, examples)

    def score(self, examples: Sequence[Example]) -> np.ndarray:
        """N x K label log-probabilities of ``examples`` after the task's prompt."""
        return self.backend.score_choices(self._contexts(examples), self.options)

    def classify(self, examples: Sequence[Example]) -> list[Answer]:
        """Score one batch, update the running estimate with it (bc, bcl), and answer."""
        scores = self.score(examples)
        if not np.all(np.isfinite(scores)):
            raise ScoringError("The model gave non-finite label scores; nothing was updated.")
        raw = softmax(scores, axis=1)
        with self._lock:
            calibrated, state = self._calibrate(scores)
        answers = []
        for i in range(len(examples)):
            probs = raw[i] if calibrated is None else calibrated[i]
            answers.append(Answer(
                label=self.labels[int(np.argmax(probs))],
                uncalibrated=dict(zip(self.labels, map(float, raw[i]))),
                calibrated=None if calibrated is None
                else dict(zip(self.labels, map(float, calibrated[i]))),
                calibrator=state,
            ))
        return answers

    def _calibrate(self, scores: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
        method = self.spec.calibrator
        if method == "none":
            return None, self.state()
        if self.fixed is not None:
            return self.fixed.predict_proba(scores), self.state()
        self.stream.partial_fit(scores)
        self._unsaved += len(scores)
        if self._unsaved >= self.save_every:
            self.save()
        if self.stream.n_seen_ < self.spec.min_examples:
            return None, self.state()
        logp = normalise(scores, "logprob") - self.gamma * self.stream.mean_
        return softmax(logp, axis=1), self.state()

    def state(self) -> dict[str, Any]:
        """The calibrator's state: method, inputs its estimate has seen, whether it is used."""
        method = self.spec.calibrator
        seen = int(getattr(self.stream, "n_seen_", 0))
        state: dict[str, Any] = {"method": method}
        if method in ("bc", "bcl"):
            state.update(n_seen=seen, ready=seen >= self.spec.min_examples,
                         min_examples=self.spec.min_examples)
            if method == "bcl":
                state["gamma"] = self.gamma
        else:
            state["ready"] = True
        return state

    def save(self) -> None:
        """Write the running estimate atomically (bc, bcl; nothing to save otherwise)."""
        if not hasattr(self.stream, "mean_"):
            return
        write_json(self.state_path, {
            "task": self.name,
            "fingerprint": self.fingerprint,
            "mean": self.stream.mean_.tolist(),
            "n_seen": int(self.stream.n_seen_),
            "momentum": self.spec.momentum,
        })
        self._unsaved = 0

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/tasks`` says of this task."""
        return {
            "name": self.name,
            "labels": self.labels,
            "label_words": [o.strip() for o in self.options],
            "fields": self.fields,
            "shots": self.spec.shots,
            "template": self.task.template,
            "prefix": self.prefix,
            "calibrator": self.state(),
            "prefix_tokens": self.prefix_tokens,
        }
