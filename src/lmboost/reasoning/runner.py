"""``run_reasoning(ReasoningConfig(...))``: prompt, generate, extract, vote, score, record.

For each batch of ``batch_size`` items the runner

1. builds each item's prompt for the mode (:mod:`lmboost.reasoning.prompts`);
2. generates chains — greedy for one sample; with ``self_consistency`` n > 1 it samples n chains
   per item sharing one prompt encoding, or, with ``early_stop``, ceil(n/2) first and then one
   more per round for the items still undecided (:func:`lmboost.reasoning.vote.is_decided`);
   a family with scored choices (MMLU) instead scores them (" A" .. " D") in direct mode;
3. in zs-cot mode runs the answer-extraction prompt (greedy) on every chain;
4. extracts each chain's answer, votes, compares the vote with the target;
5. appends one JSON line per item to ``out/items.jsonl`` (flushed and fsynced).

The folder is a :class:`~lmboost.evaluation.store.RunStore`: claimed by a lock first, its
settings (:data:`RECORD_SETTINGS`, the model's weights by their fingerprint and ``batch_size``
among them: the sampling seeds follow the batches) recorded in ``out/settings.json`` and
compared on every resume. A rerun with the same settings skips the items already in
``items.jsonl`` (a partial last line left by a crash is dropped with a warning), so an
interrupted run resumes; a larger ``limit`` extends a run; ``restart`` starts over.
Finally ``out/results.json`` is written atomically: settings, accuracy (overall and per
sub-task), seconds per item, samples used/saved, and every item record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lmboost import __version__
from lmboost.backends import Backend
from lmboost.errors import ConfigError
from lmboost.evaluation import accuracy
from lmboost.evaluation.records import write_json
from lmboost.evaluation.store import BackendRunConfig, ItemLog, RunStore
from lmboost.generation import GenerationConfig, Prompt, format_prompt, resolve_chat
from lmboost.models import LoadedModel
from lmboost.models.loading import resolve_dtype
from lmboost.reasoning.prompts import (
    ANSWER_STOP,
    MODES,
    answer_prompt,
    answer_trigger,
    build_prompt,
    stop_strings,
)
from lmboost.reasoning.tasks import (
    ReasoningItem,
    extract,
    family_of,
    load_items,
    task_names,
)
from lmboost.reasoning.vote import first_decidable, is_decided, majority_vote

ANSWER_MAX_TOKENS = 32  # the zs-cot answer-extraction stage needs only a few tokens

#: Settings that change the records; a rerun into the same folder must keep them.
#: ``model_weights`` is the fingerprint of the weights (:mod:`lmboost.models.identity`);
#: ``batch_size`` fixes which items share a sampling seed (and the padding of greedy batches).
RECORD_SETTINGS = (
    "model", "task", "mode", "self_consistency", "early_stop", "max_new_tokens", "temperature",
    "top_k", "top_p", "seed", "chat", "dtype", "backend", "batch_size", "model_weights",
)
#: Record settings added after runs were written, with the value those runs had (settings
#: missing from an older record and not listed here are not compared).
ADDED_SETTINGS = {"backend": "hf"}


@dataclass(kw_only=True)
class ReasoningConfig(BackendRunConfig):
    """Settings of one reasoning run (the ``lmboost reason`` flags, one to one); ``out``,
    ``model``, ``dtype``, ``device``, ``backend``, ``tensor_parallel_size``,
    ``trust_remote_code`` and ``restart`` are every run's
    (:class:`~lmboost.evaluation.store.BackendRunConfig`).

    Attributes:
        task: ``gsm8k``, ``bbh``, ``bbh:<task>``, ``mmlu`` or ``mmlu:<subject>`` (a family of
            :data:`lmboost.reasoning.tasks.FAMILIES`, or one of its sub-tasks).
        mode: ``direct``, ``zs-cot`` or ``fs-cot``.
        self_consistency: chains sampled per item and voted on (1 = one greedy chain).
        early_stop: stop sampling an item once its vote cannot change.
        limit: evaluate the first N items of each sub-task.
        temperature, top_k, top_p: sampling settings when self_consistency > 1 (top_k 0 = off).
        chat: apply the tokenizer's chat template (None = when it has one).
    """

    task: str
    mode: str = "fs-cot"
    self_consistency: int = 1
    early_stop: bool = False
    limit: int | None = None
    max_new_tokens: int = 256
    batch_size: int = 8
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 1.0
    seed: int = 0
    chat: bool | None = None
    progress: bool = field(default=False, repr=False)

    def validate(self) -> None:
        """Raise LmboostError naming the first bad setting."""
        if self.mode not in MODES:
            raise ConfigError(f"Unknown mode '{self.mode}'. Choose one of: {', '.join(MODES)}.")
        for name in ("self_consistency", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be at least 1, not {self.limit}.")
        super().validate()
        generation_settings(self).validate()
        scored = {family_of(t).title for t in task_names(self.task) if family_of(t).scored_choices}
        if self.mode == "direct" and self.self_consistency > 1 and scored:
            raise ConfigError(
                f"{', '.join(sorted(scored))}'s direct mode scores the option letters and samples "
                "nothing, so self-consistency does not apply: use --mode zs-cot or fs-cot, or "
                "drop --self-consistency."
            )


def generation_settings(config: ReasoningConfig, stop: tuple[str, ...] = ()) -> GenerationConfig:
    """The first-stage decoding settings: greedy for one chain, sampling for several."""
    if config.self_consistency == 1:
        return GenerationConfig(max_new_tokens=config.max_new_tokens, stop=stop)
    return GenerationConfig(
        max_new_tokens=config.max_new_tokens,
        do_sample=True,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        stop=stop,
        seed=config.seed,
    )


def run_reasoning(
    config: ReasoningConfig, loaded: Backend | LoadedModel | None = None
) -> dict[str, Any]:
    """Run (or resume) the experiment, write ``out/results.json`` and return its content.

    ``loaded`` reuses a model already in memory (a backend or a loaded transformers model;
    ``config.model`` then only names it in the record); otherwise the model is loaded on
    ``config.backend`` only if some item is still to be done (or, for a hub id not downloaded
    yet, to fingerprint its weights).
    """
    config.validate()
    items = load_items(config.task, config.limit)
    out = Path(config.out)
    with RunStore(out, "reason", None, restart=config.restart) as store:
        backend, weights = config.open_with_weights(loaded, batch_size=config.batch_size)
        settings = _settings(config) | {"model_weights": weights}
        store.record(settings, compare=RECORD_SETTINGS, added=ADDED_SETTINGS)
        log = store.log("items.jsonl")
        done = log.read()
        pending = [item for item in items if item.uid not in done]
        if pending:
            solver = _Solver(backend or config.open_backend(batch_size=config.batch_size), config)
            batches = range(0, len(pending), config.batch_size)
            for start in tqdm(batches, desc="reasoning", unit="batch", disable=not config.progress):
                batch = pending[start : start + config.batch_size]
                began = time.perf_counter()
                records = solver.solve(batch)
                seconds = (time.perf_counter() - began) / len(batch)
                for record in records:
                    record["seconds"] = seconds
                    log.append(record)
                    done[record["uid"]] = record
        records = [done[item.uid] for item in items]
        results = summarise(config, records, items)
        write_json(out / "results.json", results)
    return results


def summarise(
    config: ReasoningConfig, records: list[dict], items: list[ReasoningItem]
) -> dict[str, Any]:
    """The run record: settings, accuracy overall and per sub-task, costs, every item."""
    targets = [r["target"] for r in records]
    votes = [r["vote"] if r["vote"] is not None else "" for r in records]
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_task.setdefault(r["task"], []).append(i)
    return {
        "lmboost_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": _settings(config) | {"limit": config.limit},
        "task": config.task,
        "mode": config.mode,
        "n_items": len(records),
        "n_correct": int(sum(r["correct"] for r in records)),
        "accuracy": accuracy(targets, votes),
        "accuracy_by_task": {
            task: accuracy([targets[i] for i in idx], [votes[i] for i in idx])
            for task, idx in by_task.items()
        },
        "seconds_per_item": float(np.mean([r["seconds"] for r in records])),
        "samples_used": int(sum(r["samples_used"] for r in records)),
        "samples_saved": int(sum(r["samples_saved"] for r in records)),
        "prompt_example": _prompt_text(items[0], config),
        "items": records,
    }


def read_item_log(path: Path) -> dict[str, dict]:
    """Finished item records by uid from ``items.jsonl`` (see :meth:`ItemLog.read`)."""
    return ItemLog(Path(path)).read()



class _Solver:
    """Turns a batch of items into item records with one model."""

    def __init__(self, backend: Backend, config: ReasoningConfig) -> None:
        self.backend = backend
        self.config = config
        self.chat = resolve_chat(backend.tokenizer, config.chat)
        self.settings = generation_settings(config, stop_strings(config.mode, self.chat))

    def solve(self, batch: list[ReasoningItem]) -> list[dict]:
        """One record per item (all items of a task share its family)."""
        if self.config.mode == "direct" and family_of(batch[0].task).scored_choices:
            return self._score(batch)
        return self._solve_generated(batch)

    def _score(self, batch: list[ReasoningItem]) -> list[dict]:
        """Direct mode of a family with scored choices (MMLU): the choice with the highest
        log-probability after the few-shot context, e.g. the letter after MMLU's 5 shots."""
        choices = family_of(batch[0].task).scored_choices
        contexts = [build_prompt(item, "direct")[0] for item in batch]
        scores = self.backend.score_choices(contexts, list(choices))
        records = []
        for item, row in zip(batch, scores):
            letter = choices[int(np.argmax(row))].strip()
            records.append(_record(item, [], [letter], 1, scores=row.tolist()))
        return records

    def _solve_generated(self, batch: list[ReasoningItem]) -> list[dict]:
        """Chains (voted on when several), drawn in rounds for the items still undecided."""
        n = self.config.self_consistency
        prompts = [build_prompt(item, self.config.mode) for item in batch]
        chains: list[list[str]] = [[] for _ in batch]
        answer_texts: list[list[str]] = [[] for _ in batch]
        answers: list[list[str | None]] = [[] for _ in batch]
        active = list(range(len(batch)))
        want = first_decidable(n) if self.config.early_stop else n
        round_ = 0
        while active:
            settings = self.settings
            if settings.do_sample:
                settings = dataclasses.replace(settings, seed=self._seed(batch[0], round_))
            drawn = self.backend.generate(
                [prompts[i] for i in active], settings, n=want, chat=self.chat,
                batch_size=self.config.batch_size,
            )
            texts = self._answer_texts([(batch[i], prompts[i], d) for i, d in zip(active, drawn)])
            for i, new, extracted in zip(active, drawn, texts):
                chains[i] += new
                answer_texts[i] += extracted
                answers[i] += [extract(batch[i], t) for t in extracted]
            active = [
                i for i in active
                if len(answers[i]) < n
                and not (self.config.early_stop and is_decided(answers[i], n - len(answers[i])))
            ]
            want, round_ = 1, round_ + 1
        zs = self.config.mode == "zs-cot"
        return [
            _record(item, chains[i], answers[i], n, answer_texts=answer_texts[i] if zs else None)
            for i, item in enumerate(batch)
        ]

    def _answer_texts(
        self, drawn: list[tuple[ReasoningItem, Prompt, list[str]]]
    ) -> list[list[str]]:
        """For each (item, prompt, chains): the texts its answers are read from — the chains, or
        in zs-cot the answer trigger plus its greedy continuation after each chain (all chains
        of the batch in one generate call)."""
        if self.config.mode != "zs-cot":
            return [chains for _, _, chains in drawn]
        settings = GenerationConfig(
            max_new_tokens=min(ANSWER_MAX_TOKENS, self.config.max_new_tokens), stop=ANSWER_STOP
        )
        second = [answer_prompt(p, chain, item) for item, p, chains in drawn for chain in chains]
        outs = iter(self.backend.generate(
            second, settings, chat=self.chat, batch_size=self.config.batch_size
        ))
        return [
            [f"{answer_trigger(item)}{next(outs)[0]}" for _ in chains] for item, _, chains in drawn
        ]

    def _seed(self, item: ReasoningItem, round_: int) -> int:
        """A sampling seed fixed by the run seed, the batch's first item and the round, so that
        a resumed run draws what the uninterrupted one would have."""
        key = f"{self.config.seed}:{item.uid}:{round_}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")


def _record(
    item: ReasoningItem,
    chains: list[str],
    answers: list[str | None],
    n: int,
    *,
    answer_texts: list[str] | None = None,
    scores: list[float] | None = None,
) -> dict[str, Any]:
    vote, share = majority_vote(answers)
    record: dict[str, Any] = {
        "uid": item.uid,
        "task": item.task,
        "question": item.question,
        "target": item.target,
        "chains": chains,
        "answers": answers,
        "vote": vote,
        "share": share,
        "correct": vote == item.target,
        "samples_used": len(answers),
        "samples_saved": max(0, n - len(answers)),
    }
    if item.options:
        record["options"] = list(item.options)
    if answer_texts is not None:
        record["answer_texts"] = answer_texts
    if scores is not None:
        record["scores"] = scores
    return record


def _settings(config: ReasoningConfig) -> dict[str, Any]:
    """The record settings but the weights' fingerprint, with the dtype resolved."""
    settings = {name: getattr(config, name) for name in RECORD_SETTINGS if name != "model_weights"}
    return settings | {"dtype": resolve_dtype(config.dtype, config.device)}


def _prompt_text(item: ReasoningItem, config: ReasoningConfig) -> str:
    """The first item's first-stage prompt as plain text (no chat template), for the record."""
    return format_prompt(None, build_prompt(item, config.mode), chat=False)
