"""The model judging and embedding its own text, for RAIN's search.

Self-evaluation asks the goal's two-option question twice in one batch, the wanted option labelled
(A) and then (B), and reads each answer from the next-token probabilities of the two labels
after "The answer is: (". Averaging the two orders cancels a preference for a position:

    p_good = 1/2 [ P(A) / (P(A) + P(B)) | good = A   +   P(B) / (P(A) + P(B)) | good = B ]
    value  = 2 p_good - 1  in [-1, 1]                                    (the paper's scale)

With ``hard=True`` each order casts a vote instead (1 when the good label is the more probable),
as the authors' code does; the value is then -1, 0 or 1. The label tokens are found through the
tokenizer (the first token of each label as it follows the answer prefix), never hard-coded.

Speed: the judge's questions about one prompt differ only from the response on, so the tokens
before it (the chat header, the instruction, the prompt: most of each question) are run once and
their KV cache kept; each evaluation then runs only the response and the options, for both orders
in one batch, and the output head only at the last position (``logits_to_keep``). The result is
that of a plain forward of the whole question, to float round-off.

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
from lmboost.decoding.goals import ANSWER_PREFIX, Goal, resolve_goal
from lmboost.generation import GenerationError, encode_prompt, format_prompt, resolve_chat
from lmboost.models.loading import LoadedModel
from lmboost.scoring import EncodedRequest

#: Stands in for the response to find where it starts in a judge prompt (a private-use character).
_RESPONSE_MARK = "\ue000"


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
    itself, in [-1, 1]; memoised by (prompt, response)."""

    def __init__(
        self,
        model: HFBackend | LoadedModel,
        goal: Goal,
        *,
        chat: bool | None = None,
        hard: bool = False,
    ) -> None:
        self.backend = hf_backend(model)
        self.goal = goal
        self.chat = resolve_chat(self.backend.tokenizer, chat)
        self.hard = hard
        self.label_ids = label_token_ids(self.backend.tokenizer, goal.labels)
        self.window = self.backend.context_window
        self.memo: dict[tuple[str, str], float] = {}
        self._prefix: CachedPrefix | None = None

    def __call__(self, prompt: str, response: str) -> float:
        """The value of ``response`` to ``prompt``: 2 p_good - 1 (memoised)."""
        key = (prompt, response)
        if key not in self.memo:
            good = self.p_good(prompt, response)
            if self.hard:
                good = (good > 0.5).float()
            self.memo[key] = float(2 * good.mean() - 1)
        return self.memo[key]

    @torch.inference_mode()
    def p_good(self, prompt: str, response: str) -> torch.Tensor:
        """P(good option) / (P(A) + P(B)) with the good option labelled (A), then (B): a float32
        tensor of 2, both orders run as one batch after the cached prompt prefix."""
        rows = [
            encode_prompt(
                self.backend.tokenizer,
                self.goal.judge(prompt, response, good_first=good_first),
                self.chat,
            )
            for good_first in (True, False)
        ]
        prefix = None
        if max(map(len, rows)) > self.window:
            warnings.warn(
                f"A judge prompt is longer than the model's context window ({self.window} "
                "tokens): its beginning is cut off.",
                stacklevel=3,
            )
            rows = [row[-self.window :] for row in rows]
        else:
            prefix = self._shared_prefix(prompt, rows)
        logits = self.backend.last_logits(rows, prefix)
        pair = logits[:, list(self.label_ids)].softmax(-1)  # rows: good = A, good = B
        return torch.stack([pair[0, 0], pair[1, 1]])

    def _shared_prefix(self, prompt: str, rows: list[list[int]]) -> CachedPrefix | None:
        """The KV cache of the question's tokens before the response (chat header, instruction,
        prompt), which every question about ``prompt`` shares: kept from the last evaluation
        while every row still begins with its tokens, else computed anew (a new prompt). None
        when the model takes no KV cache or the rows would not fit its sliding window."""
        if not self.backend.caches_prefixes:
            return None
        sliding = self.backend.sliding_window
        if sliding and max(map(len, rows)) >= sliding:
            return None
        cached = self._prefix
        if cached is not None and all(_begins(row, cached.tokens) for row in rows):
            return cached
        head = self._head_tokens(prompt)
        length = 0  # the head's tokens that begin every row, one token of each row left to run
        limit = min(len(head), *(len(row) - 1 for row in rows))
        while length < limit and all(row[length] == head[length] for row in rows):
            length += 1
        if length == 0:
            return None
        self._prefix = self.backend.prefix(head[:length])
        return self._prefix

    def _head_tokens(self, prompt: str) -> tuple[int, ...]:
        """The tokens of a question about ``prompt`` before its response, less the last one
        (which may merge with the response's first characters); () when the response's place
        cannot be found."""
        question = self.goal.judge(prompt, _RESPONSE_MARK, good_first=True)
        text = format_prompt(self.backend.tokenizer, question, self.chat)
        if text.count(_RESPONSE_MARK) != 1:
            return ()
        head = text[: text.index(_RESPONSE_MARK)]
        ids = self.backend.tokenizer(head, add_special_tokens=not self.chat)["input_ids"]
        return tuple(ids[:-1])


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


def _begins(row: list[int], tokens: tuple[int, ...]) -> bool:
    """Whether ``row`` begins with ``tokens`` and has at least one token more."""
    return len(row) > len(tokens) and tuple(row[: len(tokens)]) == tokens
