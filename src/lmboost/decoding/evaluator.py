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
from dataclasses import dataclass

import numpy as np
import torch

from lmboost.decoding.goals import ANSWER_PREFIX, Goal, resolve_goal
from lmboost.generation import (
    GenerationError,
    context_window,
    encode_prompt,
    format_prompt,
    resolve_chat,
)
from lmboost.models.calls import cache_argument, cache_kwargs, takes_logits_to_keep
from lmboost.models.loading import LoadedModel
from lmboost.scoring import EncodedRequest, Scorer

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
        self, loaded: LoadedModel, goal: Goal, *, chat: bool | None = None, hard: bool = False
    ) -> None:
        self.loaded = loaded
        self.goal = goal
        self.chat = resolve_chat(loaded.tokenizer, chat)
        self.hard = hard
        self.label_ids = label_token_ids(loaded.tokenizer, goal.labels)
        self.window = context_window(loaded.model)
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
                self.loaded.tokenizer,
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
        logits = last_logits(self.loaded, rows, prefix)
        pair = logits[:, list(self.label_ids)].softmax(-1)  # rows: good = A, good = B
        return torch.stack([pair[0, 0], pair[1, 1]])

    def _shared_prefix(self, prompt: str, rows: list[list[int]]) -> CachedPrefix | None:
        """The KV cache of the question's tokens before the response (chat header, instruction,
        prompt), which every question about ``prompt`` shares: kept from the last evaluation
        while every row still begins with its tokens, else computed anew (a new prompt). None
        when the model takes no KV cache or the rows would not fit its sliding window."""
        if cache_argument(self.loaded.model) is None:
            return None
        sliding = getattr(self.loaded.model.config.get_text_config(), "sliding_window", None)
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
        self._prefix = CachedPrefix.run(self.loaded, head[:length])
        return self._prefix

    def _head_tokens(self, prompt: str) -> tuple[int, ...]:
        """The tokens of a question about ``prompt`` before its response, less the last one
        (which may merge with the response's first characters); () when the response's place
        cannot be found."""
        question = self.goal.judge(prompt, _RESPONSE_MARK, good_first=True)
        text = format_prompt(self.loaded.tokenizer, question, self.chat)
        if text.count(_RESPONSE_MARK) != 1:
            return ()
        head = text[: text.index(_RESPONSE_MARK)]
        ids = self.loaded.tokenizer(head, add_special_tokens=not self.chat)["input_ids"]
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
        loaded: LoadedModel,
        goal: Goal | str,
        *,
        chat: bool | None = None,
        hard: bool = False,
        batch_size: int = 8,
    ) -> None:
        self.loaded = loaded
        self.goal = resolve_goal(goal) if isinstance(goal, str) else goal
        self.chat = resolve_chat(loaded.tokenizer, chat)
        self.hard = hard
        self.label_ids = label_token_ids(loaded.tokenizer, self.goal.labels)
        self.scorer = Scorer(loaded, batch_size=batch_size, truncation="left")

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
        tokenizer = self.loaded.tokenizer
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

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.window = context_window(loaded.model)
        self.hidden = loaded.model.config.get_text_config().hidden_size
        self.memo: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """One embedding row per text, in order; new texts are run as one right-padded batch."""
        tokenizer = self.loaded.tokenizer
        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        rows = [tokenizer(t, add_special_tokens=False)["input_ids"][: self.window] for t in new]
        for text, row in zip(new, rows):
            if not row:
                self.memo[text] = torch.zeros(self.hidden)
        filled = [(text, row) for text, row in zip(new, rows) if row]
        if filled:
            ids, mask = pad_rows([row for _, row in filled], _pad_id(tokenizer), self.loaded.device)
            body = _decoder(self.loaded.model)
            if body is not None:  # the body alone: no output head, no logits
                hidden = body(input_ids=ids, attention_mask=mask, use_cache=False)
                hidden = hidden.last_hidden_state.float()
            else:
                out = self.loaded.model(
                    input_ids=ids, attention_mask=mask, output_hidden_states=True
                )
                hidden = out.hidden_states[-1].float()
            weights = mask.unsqueeze(-1).float()
            means = (hidden * weights).sum(1) / weights.sum(1)
            for (text, _), mean in zip(filled, means.cpu()):
                self.memo[text] = mean
        return torch.stack([self.memo[t] for t in texts])


@dataclass(frozen=True)
class CachedPrefix:
    """The KV cache (per layer, keys and values of one row) of ``tokens`` run by the model."""

    tokens: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def run(cls, loaded: LoadedModel, tokens: Sequence[int]) -> CachedPrefix:
        """Run ``tokens`` once and keep their KV cache."""
        from transformers import DynamicCache

        ids = torch.tensor([list(tokens)], dtype=torch.long, device=loaded.device)
        cache = DynamicCache(config=loaded.model.config)
        _run(loaded.model, input_ids=ids, use_cache=True, **cache_kwargs(loaded.model, cache))
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        return cls(tuple(tokens), layers)

    def cache(self, config, rows: int):
        """A fresh DynamicCache holding the prefix for ``rows`` rows (expanded, not copied)."""
        from transformers import DynamicCache

        data = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self.layers]
        return DynamicCache(ddp_cache_data=data, config=config)


def last_logits(
    loaded: LoadedModel, rows: list[list[int]], prefix: CachedPrefix | None = None
) -> torch.Tensor:
    """Next-token logits (float32) after each row of token ids, run as one left-padded batch.
    With ``prefix`` (whose tokens begin every row) only the rest of each row is run, after the
    prefix's cached KV."""
    start = len(prefix.tokens) if prefix is not None else 0
    ids, mask = pad_rows(
        [row[start:] for row in rows], _pad_id(loaded.tokenizer), loaded.device, left=True
    )
    positions = start + (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {}
    if prefix is not None:
        mask = torch.cat([mask.new_ones(len(rows), start), mask], 1)
        extra = cache_kwargs(loaded.model, prefix.cache(loaded.model.config, len(rows)))
    return next_token_logits(
        loaded.model, input_ids=ids, attention_mask=mask, position_ids=positions, **extra
    )


def next_token_logits(model, **inputs) -> torch.Tensor:
    """``model(**inputs)``'s logits at the last position of each row (float32): the output head
    runs at that position only where the model's forward takes ``logits_to_keep`` (transformers'
    causal LMs do), else at every position, the rest being dropped."""
    return _run(model, **inputs).logits[:, -1].float()


def _run(model, **inputs):
    """``model(**inputs)``, asking for the logits of the last position only when it can."""
    if takes_logits_to_keep(model):
        inputs["logits_to_keep"] = 1
    return model(**inputs)


def _decoder(model):
    """The model's body without the output head (transformers' ``get_decoder``), or None."""
    get = getattr(model, "get_decoder", None)
    if get is None:
        return None
    try:
        body = get()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    return None if body is None or body is model else body


def _begins(row: list[int], tokens: tuple[int, ...]) -> bool:
    """Whether ``row`` begins with ``tokens`` and has at least one token more."""
    return len(row) > len(tokens) and tuple(row[: len(tokens)]) == tokens


def pad_rows(
    rows: list[list[int]], pad: int, device: torch.device, *, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as one padded (ids, attention mask) pair, padded on the right or left."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long, device=device)
        mask[i, span] = 1
    return ids, mask


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return pad if pad is not None else (tokenizer.eos_token_id or 0)
