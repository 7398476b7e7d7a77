"""``run_generate(GenerateRunConfig(...), prompts)``: generate for every prompt into a run folder,
resumably — greedy, sampled, or RAIN (:func:`lmboost.decoding.rain_generate`).

The folder is a :class:`~lmboost.evaluation.store.RunStore` (the one ``lmboost icl``,
``reason`` and the rest write through):

1. ``out`` is checked and claimed by a lock naming the run before any model work (a second run
   into it is refused, naming the first);
2. the settings (:func:`run_settings`: the model's weights by their fingerprint, dtype, backend,
   chat, the decoding and every option of it that changes the outputs) are compared with those
   ``settings.json`` recorded — a difference is an error naming each one, old -> new, and
   ``restart`` moves the old content aside instead — and written;
3. every prompt not yet in ``items.jsonl`` is generated, and each finished prompt is appended
   there as one JSON line (flushed and fsynced): greedy and sampled prompts a batch at a time,
   as each batch ends; RAIN prompts one by one. An interrupted run loses only the batch (or the
   RAIN prompt) in progress, and a rerun with the same settings and prompts goes on from there;
4. finally ``results.json`` is written atomically: the settings, the total seconds and, per
   prompt in order, its record.

Prompts are identified by their position; a rerun may add prompts at the end (they are generated
then), but a prompt changed at a position already done is an error. Sampled batches are fixed by
position (prompts ``[k * batch_size, (k + 1) * batch_size)``) and each is seeded by ``seed`` and
its first position, so a resumed run draws what the uninterrupted one would have. With RAIN's
``calibrate`` the calibration runs over the judgements of the prompts generated in this process,
so a resumed run's later prompts can differ from an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lmboost.backends import Backend
from lmboost.decoding import ModelEmbedder, RainConfig, SelfEvaluator, rain_generate, resolve_goal
from lmboost.errors import (
    ConfigError,
    EvaluationError,
    GenerationError,
    InputFileError,
    RunRecordError,
)
from lmboost.evaluation.records import write_json
from lmboost.evaluation.store import SETTINGS, BackendRunConfig, RunStore
from lmboost.generation.generate import GenerationConfig
from lmboost.models import LoadedModel
from lmboost.models.loading import resolve_dtype

#: Default prompts per generate call (and per appended batch), by backend: vLLM batches by
#: itself and is kept busier by more.
DEFAULT_BATCH_SIZE = {"hf": 8, "vllm": 64}
#: Plain decoding's default continuation length (RAIN's: ``RainConfig.max_new_tokens``).
DEFAULT_MAX_NEW_TOKENS = 128
#: RainConfig fields that do not change the outputs (so are not recorded as settings).
_RAIN_NOT_SETTINGS = ("batched",)


@dataclass(kw_only=True)
class GenerateRunConfig(BackendRunConfig):
    """Settings of one ``lmboost generate`` run (its flags, one to one); ``out``, ``model``,
    ``dtype``, ``device``, ``backend``, ``tensor_parallel_size``, ``trust_remote_code`` and
    ``restart`` are every run's (:class:`~lmboost.evaluation.store.BackendRunConfig`).

    Attributes:
        max_new_tokens: continuation length of plain decoding (None: 128); with ``rain``, set
            ``rain.max_new_tokens`` instead.
        batch_size: prompts per generate call of plain decoding, each batch appended to the
            log as it ends (None: 8 on hf, 64 on vllm).
        sample: sample (``temperature``, ``top_k`` (0 = off), ``top_p``, ``seed``) instead of
            decoding greedily.
        rain: decode with RAIN under these settings instead (hf backend only); ``goal``
            (``harmless``, ``positive`` or a yes/no question), ``hard_votes``, ``calibrate``
            (:class:`~lmboost.decoding.SelfEvaluator`) and ``trace`` (record each step's
            search) apply to it.
        chat: apply the tokenizer's chat template (None = when it has one).
        progress: a progress bar over batches (plain), a progress line per prompt (RAIN).
    """

    max_new_tokens: int | None = None
    batch_size: int | None = None
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    rain: RainConfig | None = None
    goal: str = "harmless"
    hard_votes: bool = False
    calibrate: bool = False
    trace: bool = False
    chat: bool | None = None
    progress: bool = field(default=False, repr=False)

    def validate(self) -> None:
        """Raise LmboostError naming the first bad setting."""
        super().validate()
        if self.rain is not None:
            if self.backend != "hf":
                raise GenerationError(
                    "RAIN searches over the model's cached states, which only the hf backend "
                    "exposes: drop --backend vllm (or --rain)."
                )
            if self.sample:
                raise GenerationError("RAIN decodes by its own search: drop --sample (or --rain).")
            if self.max_new_tokens is not None and self.max_new_tokens != self.rain.max_new_tokens:
                raise GenerationError(
                    "With RAIN the continuation length is rain.max_new_tokens: leave "
                    "max_new_tokens unset."
                )
            self.rain.validate()
            resolve_goal(self.goal)
            return
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}.")
        generation_config(self).validate()


def generation_config(config: GenerateRunConfig, seed: int | None = None) -> GenerationConfig:
    """Plain decoding's settings (``seed``: the sampling seed of one batch)."""
    max_new = DEFAULT_MAX_NEW_TOKENS if config.max_new_tokens is None else config.max_new_tokens
    if not config.sample:
        return GenerationConfig(max_new_tokens=max_new)
    return GenerationConfig(
        max_new_tokens=max_new, do_sample=True, temperature=config.temperature,
        top_k=config.top_k, top_p=config.top_p, seed=config.seed if seed is None else seed,
    )


def run_settings(config: GenerateRunConfig) -> dict[str, Any]:
    """The settings that change the outputs, as ``settings.json`` records them (the weights'
    fingerprint, known once the model is located, is added as ``model_weights``)."""
    settings: dict[str, Any] = {
        "model": config.model,
        "dtype": resolve_dtype(config.dtype, config.device),
        "backend": config.backend,
        "chat": config.chat,
    }
    if config.rain is not None:
        rain = {k: v for k, v in dataclasses.asdict(config.rain).items()
                if k not in _RAIN_NOT_SETTINGS}
        return settings | {"decoding": "rain", "goal": resolve_goal(config.goal).name,
                           "hard_votes": config.hard_votes, "calibrate": config.calibrate,
                           "trace": config.trace} | rain
    gen = generation_config(config)
    settings |= {"decoding": "sample" if config.sample else "greedy",
                 "max_new_tokens": gen.max_new_tokens, "batch_size": _batch_size(config)}
    if config.sample:
        settings |= {"temperature": config.temperature, "top_k": config.top_k,
                     "top_p": config.top_p, "seed": config.seed}
    return settings


def run_generate(
    config: GenerateRunConfig,
    prompts: Sequence[str],
    loaded: Backend | LoadedModel | None = None,
    *,
    on_item: Callable[[dict[str, Any]], None] | None = None,
    evaluator: SelfEvaluator | None = None,
) -> dict[str, Any]:
    """Generate (or resume generating) for every prompt, write ``out/results.json`` and return
    its content: ``{"settings", "seconds", "results": [one record per prompt, in order]}``.

    A record holds the prompt's ``index``, the ``prompt``, the ``text`` and the ``seconds`` it
    took (a batch's time shared by its prompts); with RAIN also its ``tokens``, committed
    ``steps``, search ``iterations`` and, with ``trace``, each step's search.

    ``loaded`` reuses a model already in memory (``config.model`` then only names it); else the
    model is loaded only if some prompt is still to be done (or, for a hub id not downloaded
    yet, to fingerprint its weights). ``on_item(record)`` is called after each record is
    appended to the log.

    ``evaluator`` (RAIN only) judges with this :class:`~lmboost.decoding.SelfEvaluator`
    instead of a new one built from the config: one shared by several runs (its memo and, with
    ``calibrate``, its running calibration carry over), or one asking under another chat
    setting than the generation's. It must be of ``loaded``'s model and judge the config's
    goal; the settings recorded are still the config's (goal, hard_votes, calibrate).
    """
    config.validate()
    if evaluator is not None:
        if config.rain is None:
            raise GenerationError("An evaluator judges RAIN's search: give it with config.rain.")
        if evaluator.goal.name != resolve_goal(config.goal).name:
            raise GenerationError(
                f"The evaluator judges the goal {evaluator.goal.name!r}, not the config's "
                f"{resolve_goal(config.goal).name!r}."
            )
    prompts = list(prompts)
    if not prompts or any(not isinstance(p, str) or not p for p in prompts):
        raise GenerationError("Give at least one prompt, each a non-empty string.")
    out = Path(config.out)
    with RunStore(out, "generate", None, restart=config.restart) as store:
        if not store.path(SETTINGS).exists() and store.path("results.json").exists():
            raise RunRecordError(
                f"{out} holds a results.json but no settings.json (a run of an earlier lmboost "
                "version, or another tool's): it cannot be resumed. Pass --restart to start "
                "over (its content is moved aside), or give another --out."
            )
        backend, weights = config.open_with_weights(loaded)
        settings = run_settings(config) | {"model_weights": weights}
        store.record(settings)
        log = store.log("items.jsonl", key="index")
        done = log.read()
        _check_prompts(out, prompts, done)
        pending = [i for i in range(len(prompts)) if i not in done]
        if pending:
            backend = backend or config.open_backend()
            if config.rain is not None:
                run = _rain(config, backend, prompts, pending, log.append, on_item, evaluator)
            else:
                run = _plain(config, backend, prompts, pending, log.append, on_item)
            for record in run:
                done[record["index"]] = record
        records = [done[i] for i in range(len(prompts))]
        results = {"settings": settings, "seconds": sum(r["seconds"] for r in records),
                   "results": records}
        write_json(out / "results.json", results)
    return results


def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a UTF-8 file (a leading BOM is fine): one per non-empty line, or one
    ``{"prompt": ...}`` object per line of a ``.jsonl`` file. Errors name the file and line; a
    file that is not UTF-8 is a :class:`~lmboost.errors.FileEncodingError`."""
    from lmboost.tasks.datafiles import read_text

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Prompts file not found: {path}.")
    lines = [(n, line.rstrip("\r")) for n, line in enumerate(read_text(path).split("\n"), 1)]
    lines = [(n, line) for n, line in lines if line.strip()]
    prompts = []
    for number, line in lines:
        if path.suffix.lower() != ".jsonl":
            prompts.append(line)
            continue
        try:
            prompt = json.loads(line)["prompt"]
        except json.JSONDecodeError as err:
            raise InputFileError(
                f"{path}, line {number}: not valid JSON ({err.msg}, column {err.colno}); every "
                'line must be a JSON object such as {"prompt": "How do I pick a lock?"}.'
            ) from None
        except (KeyError, TypeError):
            prompt = None
        if not isinstance(prompt, str) or not prompt:
            raise InputFileError(
                f"{path}, line {number}: every line must be a JSON object with a non-empty "
                '"prompt" string, e.g. {"prompt": "How do I pick a lock?"}.'
            )
        prompts.append(prompt)
    if not prompts:
        raise InputFileError(f"{path} holds no prompts.")
    return prompts


def summarise_run(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-prompt means of a run's records (``run_generate(...)["results"]``, or some of them):
    ``n``, ``seconds`` (total) and ``seconds_per_prompt``; ``tokens_per_prompt`` when the
    records count their tokens (RAIN's do); RAIN's search, ``iterations_per_prompt`` and
    ``steps_per_prompt``, and with ``trace`` also ``rewinds_per_prompt`` (iterations that left
    the root branch the previous one took) and ``early_commit_share`` (steps committed because
    the best child passed the visit and value thresholds, not because the budget ran out)."""
    records = list(records)
    if not records:
        raise EvaluationError("No records to summarise.")
    n = len(records)
    seconds = sum(r["seconds"] for r in records)
    summary: dict[str, Any] = {"n": n, "seconds": seconds, "seconds_per_prompt": seconds / n}
    if all("tokens" in r for r in records):
        summary["tokens_per_prompt"] = sum(r["tokens"] for r in records) / n
    if all("iterations" in r for r in records):
        steps = sum(r["steps"] for r in records)
        summary["iterations_per_prompt"] = sum(r["iterations"] for r in records) / n
        summary["steps_per_prompt"] = steps / n
        if all("trace" in r for r in records):
            trace = [step for r in records for step in r["trace"]]
            summary["rewinds_per_prompt"] = sum(step["rewinds"] for step in trace) / n
            summary["early_commit_share"] = (
                sum(step["stop"] == "thresholds" for step in trace) / max(1, len(trace))
            )
    return summary


def same_rain_trace(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]],
                    atol: float = 1e-3) -> bool:
    """Whether two RAIN traces (``RainResult.trace``, or a record's ``trace``) describe the same
    search: per step the same iterations, rewinds, stop reason and committed text, and the root
    children's visits and values within ``atol``."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if [x[k] for k in ("iterations", "rewinds", "stop", "committed")] != [
            y[k] for k in ("iterations", "rewinds", "stop", "committed")
        ] or len(x["children"]) != len(y["children"]):
            return False
        for cx, cy in zip(x["children"], y["children"]):
            if abs(cx["visits"] - cy["visits"]) > atol or abs(cx["value"] - cy["value"]) > atol:
                return False
    return True


# --------------------------------------------------------------------------- internals

Append = Callable[[dict[str, Any]], None]
OnItem = Callable[[dict[str, Any]], None] | None


def _plain(config: GenerateRunConfig, backend: Backend, prompts: list[str], pending: list[int],
           append: Append, on_item: OnItem):
    """Greedy or sampled: the pending prompts of each fixed batch in one call, each batch's
    records appended as it ends."""
    size = _batch_size(config)
    chat = config.chat
    batches: dict[int, list[int]] = {}
    for i in pending:
        batches.setdefault(i // size * size, []).append(i)
    bar = tqdm(total=len(pending), desc="generate", unit="prompt", disable=not config.progress)
    with bar:
        for start, indices in batches.items():
            settings = generation_config(config, _batch_seed(config.seed, start))
            began = time.perf_counter()
            texts = backend.generate([prompts[i] for i in indices], settings, chat=chat,
                                     batch_size=size)
            seconds = (time.perf_counter() - began) / len(indices)
            records = [{"index": i, "prompt": prompts[i], "text": t[0], "seconds": seconds}
                       for i, t in zip(indices, texts)]
            for record in records:
                append(record)
            bar.update(len(records))
            for record in records:
                if on_item is not None:
                    on_item(record)
                yield record


def _rain(config: GenerateRunConfig, backend: Backend, prompts: list[str], pending: list[int],
          append: Append, on_item: OnItem, evaluator: SelfEvaluator | None = None):
    """RAIN, one prompt at a time, each record appended as it finishes."""
    assert config.rain is not None
    if evaluator is None:
        evaluator = SelfEvaluator(backend, resolve_goal(config.goal), chat=config.chat,
                                  hard=config.hard_votes, calibrate=config.calibrate)
    embedder = ModelEmbedder(backend)
    for i in pending:
        result = rain_generate(
            backend, prompts[i], config.rain, evaluator=evaluator, embedder=embedder,
            chat=config.chat,
            progress=f"prompt {i + 1}/{len(prompts)}" if config.progress else None,
        )
        record: dict[str, Any] = {
            "index": i, "prompt": prompts[i], "text": result.text, "tokens": result.tokens,
            "seconds": result.seconds, "steps": result.steps, "iterations": result.iterations,
        }
        if config.trace:
            record["trace"] = result.trace
        append(record)
        if on_item is not None:
            on_item(record)
        yield record


def _check_prompts(out: Path, prompts: list[str], done: dict) -> None:
    """A prompt changed at a position already done is an error naming it."""
    for index, record in sorted(done.items()):
        if index < len(prompts) and record.get("prompt") != prompts[index]:
            raise RunRecordError(
                f"{out} holds a run whose prompt {index + 1} was {_short(record.get('prompt'))}, "
                f"not {_short(prompts[index])}. Give the same prompts to resume (more may follow "
                "at the end), give another --out, or pass --restart to start over (the folder's "
                f"content is moved to {out.name}.old-<time> beside it)."
            )


def _short(text: Any, width: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _batch_size(config: GenerateRunConfig) -> int:
    if config.batch_size is not None:
        return config.batch_size
    return DEFAULT_BATCH_SIZE.get(config.backend, 8)


def _batch_seed(seed: int, start: int) -> int:
    """The sampling seed of the batch starting at position ``start``: fixed by the run seed and
    the position, so that a resumed run draws what the uninterrupted one would have."""
    key = f"{seed}:{start}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")

