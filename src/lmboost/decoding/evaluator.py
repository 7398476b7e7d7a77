"""The model judging and embedding its own text, for RAIN's search.

Self-evaluation asks the goal's two-option question twice in one batch, the wanted option labelled
(A) and then (B), and reads each answer from the next-token probabilities of the two labels
after "The answer is: (". Averaging the two orders cancels a preference for a position:

    p_good = 1/2 [ P(A) / (P(A) + P(B)) | good = A   +   P(B) / (P(A) + P(B)) | good = B ]
    value  = 2 p_good - 1  in [-1, 1]                                    (the paper's scale)

With ``hard=True`` each order casts a vote instead (1 when the good label is the more probable),
as the authors' code does; the value is then -1, 0 or 1. The label tokens are found through the
tokenizer (the first token of each label as it follows the answer prefix), never hard-coded.

Speed: the two orders of a question differ only at the options, and the questions of one search
differ only from the response on, most of which (the committed text) they share too. So the
tokens all rows of a batch begin with are run once, as one row, after the KV cache kept from the
last evaluation cut back to the tokens they share with it; then only the option tails run, both
orders (of every response of a batch) as one batch, and the output head only at the last
position (``logits_to_keep``). The result is that of a plain forward of the whole question, to
float round-off.

Embeddings, for RAIN's similarity updates, are the model's own last hidden states averaged over
the text's tokens, taken from the model's body without its output head; any callable from texts
to an (n, d) tensor can replace them (e.g. MiniLM). Both are memoised by text: the search meets the
same texts again and again.

:class:`GoalJudge` asks the same question of many (prompt, response) pairs at once, with any model
as the judge (an independent, stronger one for evaluation): the questions go through the
prefix-cached :class:`~lmboost.scoring.Scorer`, so the instruction they share is run once per
call. Its values are :class:`SelfEvaluator`'s for the same model (to float round-off), and it is
an ``Evaluator`` too, so an external judge can also steer RAIN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from lmboost.backends import as_backend
from lmboost.backends.hf import CachedPrefix, HFBackend
from lmboost.calibration import StreamingBatchCalibration
from lmboost.decoding.goals import ANSWER_PREFIX, Goal, resolve_goal
from lmboost.generation import GenerationError, encode_prompt, resolve_chat
from lmboost.models.loading import LoadedModel
from lmboost.scoring import EncodedRequest


def label_token_ids(
    tokenizer, labels: tuple[str, str], context: str = ANSWER_PREFIX
) -> tuple[int, int]:
    """The first token of each option label as it follows ``context`` in the judge's answer."""
    base = list(tokenizer(context, add_special_tokens=False)["input_ids"])
    ids = []
    for label in labels:
        full = list(tokenizer(context + label, add_special_tokens=False)["input_ids"])
        rest = full[len(base) :] if full[: len(base)] == base else list(
            tokenizer(label, add_special_tokens=False)["input_ids"]
        )
        if not rest:
            raise GenerationError(f"The option label {label!r} encodes to no tokens.")
        ids.append(rest[0])
    if ids[0] == ids[1]:
        raise GenerationError(
            f"The option labels {labels[0]!r} and {labels[1]!r} begin with the same token "
            f"({ids[0]}), so the judge's answer cannot tell them apart: use distinct labels."
        )
    return ids[0], ids[1]


class SelfEvaluator:
    """``evaluator(prompt, response)``: how well ``response`` meets ``goal``, judged by the model
    itself, in [-1, 1]; ``evaluator.values(prompt, responses)`` for many at once (one batch);
    memoised by (prompt, response).

    ``calibrate`` (an experiment): Batch Calibration of the judge over the judgements of a run.
    Each option order is a prompt template of its own, with its own bias; for each, a running
    :class:`~lmboost.calibration.StreamingBatchCalibration` estimate of the mean log-probabilities
    of (good, bad) over every judgement so far (this one included) is subtracted before
    p_good is read, so a value says how the text compares with the run's other texts.
    """

    def __init__(
        self,
        model: HFBackend | LoadedModel,
        goal: Goal,
        *,
        chat: bool | None = None,
        hard: bool = False,
        calibrate: bool = False,
    ) -> None:
        self.backend = hf_backend(model)
        self.goal = goal
        self.chat = resolve_chat(self.backend.tokenizer, chat)
        self.hard = hard
        self.calibrators = (
            (StreamingBatchCalibration(), StreamingBatchCalibration()) if calibrate else None
        )
        self.label_ids = label_token_ids(self.backend.tokenizer, goal.labels)
        self.window = self.backend.context_window
        self.memo: dict[tuple[str, str], float] = {}
        self._prefix: CachedPrefix | None = None

    def __call__(self, prompt: str, response: str) -> float:
        """The value of ``response`` to ``prompt``: 2 p_good - 1 (memoised)."""
        return self.values(prompt, [response])[0]

    def values(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """The value of each response (memoised); the new ones judged as one batch."""
        new = [r for r in dict.fromkeys(responses) if (prompt, r) not in self.memo]
        if new:
            good = self.p_good_batch(prompt, new)
            if self.calibrators is not None:
                good = self._calibrated(good)
            if self.hard:
                good = (good > 0.5).float()
            for response, row in zip(new, good):
                self.memo[(prompt, response)] = float(2 * row.mean() - 1)
        return [self.memo[(prompt, r)] for r in responses]

    def p_good(self, prompt: str, response: str) -> torch.Tensor:
        """P(good option) / (P(A) + P(B)) with the good option labelled (A), then (B): a float32
        tensor of 2."""
        return self.p_good_batch(prompt, [response])[0]

    @torch.inference_mode()
    def p_good_batch(self, prompt: str, responses: Sequence[str]) -> torch.Tensor:
        """(n, 2): :meth:`p_good` of each response, both orders of every question in one batch,
        run after the KV cache of the tokens all the questions share (:meth:`_shared_prefix`)."""
        rows = [
            encode_prompt(
                self.backend.tokenizer,
                self.goal.judge(prompt, response, good_first=good_first),
                self.chat,
            )
            for response in responses
            for good_first in (True, False)
        ]
        prefix = None
        if max(map(len, rows)) > self.window:
            warnings.warn(
                f"A judge prompt is longer than the model's context window ({self.window} "
                "tokens): its beginning is cut off.",
                stacklevel=4,
            )
            rows = [row[-self.window :] for row in rows]
        else:
            prefix = self._shared_prefix(rows)
        logits = None
        if prefix is not None and len(responses) > 1:
            logits = self._branched(prefix, rows)
        if logits is None:
            logits = self.backend.last_logits(rows, prefix)
        pair = logits[:, list(self.label_ids)].softmax(-1).reshape(len(responses), 2, 2)
        return torch.stack([pair[:, 0, 0], pair[:, 1, 1]], 1)  # good = A, good = B

    def _branched(self, prefix: CachedPrefix, rows: list[list[int]]) -> torch.Tensor | None:
        """The last logits of rows that come in pairs (both orders of one question) after
        ``prefix``, the tokens each pair shares run once: None when a pair shares none."""
        start = len(prefix.tokens)
        stems, tails = [], []
        for a, b in zip(rows[::2], rows[1::2]):
            shared = _common_length([a, b], min(len(a), len(b)) - 1)
            if shared <= start:
                return None
            stems.append(a[start:shared])
            tails.append([a[shared:], b[shared:]])
        return self.backend.branch_logits(prefix, stems, tails)

    def _calibrated(self, good: torch.Tensor) -> torch.Tensor:
        """p_good (n, 2) after each order's running BC estimate has taken in these rows."""
        columns = []
        for order, calibrator in enumerate(self.calibrators or ()):
            p = good[:, order].double().clamp(1e-12, 1 - 1e-12)
            scores = torch.stack([p.log(), (1 - p).log()], 1).numpy()  # (good, bad)
            calibrator.partial_fit(scores)
            columns.append(torch.from_numpy(calibrator.predict_proba(scores)[:, 0]))
        return torch.stack(columns, 1).float()

    def _shared_prefix(self, rows: list[list[int]]) -> CachedPrefix | None:
        """The KV cache of the tokens every row begins with (the chat header, the instruction,
        the prompt, and with one response its text: both orders differ only at the options),
        one token of each row left to run. Built from the last call's cache: the tokens it
        shares with it (the committed text, most of the time) are not run again. None when the
        model takes no KV cache or the rows would not fit its sliding window."""
        if not self.backend.caches_prefixes:
            return None
        sliding = self.backend.sliding_window
        if sliding and max(map(len, rows)) >= sliding:
            return None
        target = tuple(rows[0][: _common_length(rows, min(map(len, rows)) - 1)])
        if not target:
            return None
        cached = self._prefix
        kept = 0
        if cached is not None:
            kept = _common_length([cached.tokens, target], min(len(cached.tokens), len(target)))
        if cached is None or kept == 0:
            self._prefix = self.backend.prefix(target)
        else:
            self._prefix = cached.crop(kept).extend(self.backend, target[kept:])
        return self._prefix


class GoalJudge:
    """``judge.values(pairs)``: how well each (prompt, response) pair meets ``goal`` in [-1, 1],
    judged by ``loaded`` (any causal LM) in batches; ``judge(prompt, response)`` for one pair.

    The question, the option orders and the value are :class:`SelfEvaluator`'s; the batch runs
    through a :class:`~lmboost.scoring.Scorer` (``batch_size`` questions per forward), which
    computes the prefix shared by all questions once and scores each distinct question once.
    Questions longer than the context window lose their beginning, with a warning.
    """

    def __init__(
        self,
        model: LoadedModel,
        goal: Goal | str,
        *,
        chat: bool | None = None,
        hard: bool = False,
        batch_size: int = 8,
    ) -> None:
        self.scorer = as_backend(model, batch_size=batch_size, truncation="left")
        self.goal = resolve_goal(goal) if isinstance(goal, str) else goal
        self.chat = resolve_chat(self.scorer.tokenizer, chat)
        self.hard = hard
        self.label_ids = label_token_ids(self.scorer.tokenizer, self.goal.labels)

    def __call__(self, prompt: str, response: str) -> float:
        """The value of one response: 2 p_good - 1."""
        return float(self.values([(prompt, response)])[0])

    def values(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """2 p_good - 1 per pair, p_good averaged over the two option orders (with ``hard``,
        over the two orders' votes)."""
        good = self.p_good(pairs)
        if self.hard:
            good = (good > 0.5).astype(np.float64)
        return 2 * good.mean(axis=1) - 1

    def p_good(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """(n, 2): P(good option) / (P(A) + P(B)) per pair, the good option labelled (A) in
        column 0 and (B) in column 1."""
        if len(pairs) == 0:
            raise GenerationError("No (prompt, response) pairs to judge.")
        tokenizer = self.scorer.tokenizer
        a, b = self.label_ids
        requests = []
        for prompt, response in pairs:
            for good_first in (True, False):
                question = self.goal.judge(prompt, response, good_first=good_first)
                ids = tuple(encode_prompt(tokenizer, question, self.chat))
                requests += [EncodedRequest(ids, (a,)), EncodedRequest(ids, (b,))]
        results = self.scorer.loglikelihood_tokens(requests)
        logp = torch.tensor([r.logprob for r in results], dtype=torch.float64)
        pair = logp.reshape(len(pairs), 2, 2).softmax(-1)  # [pair, order, label A / B]
        return torch.stack([pair[:, 0, 0], pair[:, 1, 1]], dim=1).numpy()


class ModelEmbedder:
    """``embedder(texts)``: an (n, hidden) tensor of the model's last hidden states averaged over
    each text's tokens (zeros for an empty text); memoised by text."""

    def __init__(self, model: HFBackend | LoadedModel) -> None:
        self.backend = hf_backend(model)
        self.memo: dict[str, torch.Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """One embedding row per text, in order; new texts are run as one batch."""
        tokenizer = self.backend.tokenizer
        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        filled = [t for t in new if tokenizer(t, add_special_tokens=False)["input_ids"]]
        if filled:
            vectors = self.backend.embed(filled, "mean", special_tokens=False,
                                         batch_size=len(filled))
            self.memo.update(zip(filled, vectors))
        if len(filled) < len(new):
            zeros = torch.zeros(self.backend.hidden_size)
            self.memo.update((t, zeros) for t in new if t not in self.memo)
        return torch.stack([self.memo[t] for t in texts])


def hf_backend(model: HFBackend | LoadedModel) -> HFBackend:
    """The HF backend of ``model``: RAIN's search and self-evaluation need its cached states."""
    backend = as_backend(model)
    if not isinstance(backend, HFBackend):
        raise GenerationError(
            f"RAIN needs the hf backend (cached states of the model), not {backend.name}."
        )
    return backend


def _common_length(rows: Sequence[Sequence[int]], limit: int) -> int:
    """How many tokens, at most ``limit``, every row begins with."""
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length
