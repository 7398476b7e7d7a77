"""The prefix-cached scoring engine: lm-evaluation-harness's ``loglikelihood``, fast.

For requests (context, continuation) it returns log P(continuation | context), per token and in
total, and whether the continuation is the greedy one. Three things make it fast:

1. the token prefix shared by every context (instruction + demonstrations) is run once and its
   KV cache reused for every request;
2. each distinct context is run once (one forward per example, right-padded in batches: padding
   after the real tokens cannot change them under causal attention); the output head is applied
   only at the positions that are scored, not at every position of the prompt;
3. continuations longer than one token are scored exactly, token by token, in a second batched
   forward over the continuation tokens alone, reusing the example's own cache.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from lmboost.errors import ScoringError
from lmboost.models.calls import cache_kwargs
from lmboost.models.loading import LoadedModel
from lmboost.scoring.requests import EncodedRequest, encode_request


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Log-likelihood of one continuation given its context."""

    logprob: float
    is_greedy: bool
    token_logprobs: tuple[float, ...]


class Scorer:
    """Scores continuations under a causal LM with a shared-prefix KV cache.

    ``truncation`` decides what happens to a request longer than the model's context window:
    "error" (default) raises a ScoringError; "left" drops the oldest context tokens with a warning.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int = 16,
        max_length: int | None = None,
        truncation: str = "error",
        progress: bool = False,
    ) -> None:
        if loaded.is_encoder:
            raise ScoringError(f"'{loaded.spec}' is an encoder; scoring needs a causal LM.")
        if truncation not in ("error", "left"):
            raise ScoringError(f"truncation must be 'error' or 'left', not {truncation!r}.")
        if batch_size < 1:
            raise ScoringError(f"batch_size must be at least 1, not {batch_size}.")
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size
        self.truncation = truncation
        self.progress = progress
        config = self.model.config.get_text_config()
        self.max_length = max_length or getattr(config, "max_position_embeddings", None) or 2048
        self.sliding_window = _sliding_window(config)
        self._prefix: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self._manual_head = self._check_manual_head()
        self._memo: dict[EncodedRequest, LoglikelihoodResult] = {}

    # ------------------------------------------------------------------ public API
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """log P(continuation | context) for each (context, continuation) pair, in input order."""
        if len(requests) == 0:
            raise ScoringError("No requests to score: pass at least one (context, continuation).")
        encoded = [encode_request(self.tokenizer, ctx, cont) for ctx, cont in requests]
        return self.loglikelihood_tokens(encoded)

    def score_choices(
        self, contexts: Sequence[str], choices: Sequence[str] | Sequence[Sequence[str]]
    ) -> np.ndarray:
        """N x K matrix of total log-probabilities of each choice after each context.

        ``choices`` is one list of K strings shared by all contexts (label words), or one list per
        context (all of the same length K).
        """
        if len(contexts) == 0:
            raise ScoringError("No contexts to score.")
        per_context = [choices] * len(contexts) if isinstance(choices[0], str) else choices
        if len(per_context) != len(contexts):
            raise ScoringError(f"{len(per_context)} choice lists for {len(contexts)} contexts.")
        k = len(per_context[0])
        if k == 0 or any(len(c) != k for c in per_context):
            raise ScoringError("Every context needs the same, non-zero number of choices.")
        requests = [(ctx, c) for ctx, cs in zip(contexts, per_context) for c in cs]
        results = self.loglikelihood(requests)
        return np.array([r.logprob for r in results], dtype=np.float64).reshape(len(contexts), k)

    # ------------------------------------------------------------------ engine
    @torch.inference_mode()
    def loglikelihood_tokens(self, requests: Sequence[EncodedRequest]) -> list[LoglikelihoodResult]:
        """The engine on already-tokenized requests (see ``encode_request``).

        Each distinct request is scored once per Scorer: repeats, within a call or across calls
        (zero-shot prompts under several seeds, say), are answered from memory.
        """
        if len(requests) == 0:
            raise ScoringError("No requests to score.")
        requests = [self._fit_window(r) for r in requests]
        todo = list(dict.fromkeys(r for r in requests if r not in self._memo))
        if todo:
            self._memo.update(zip(todo, self._score(todo)))
        return [self._memo[r] for r in requests]

    def _score(self, requests: list[EncodedRequest]) -> list[LoglikelihoodResult]:
        """Score distinct requests: shared prefix once, then batches of distinct contexts.

        With a sliding attention window (Gemma 3, Mistral) a request that does not fit inside
        the window is scored on its own, without the shared prefix or padding, so the model's
        sliding cache sees exactly what it sees in generation.
        """
        window = self.sliding_window
        if window is not None and any(_length(r) >= window for r in requests):
            long = [i for i, r in enumerate(requests) if _length(r) >= window]
            warnings.warn(
                f"{len(long)} of {len(requests)} requests are longer than the model's sliding "
                f"window ({window} tokens); scoring them one context at a time (slower).",
                stacklevel=3,
            )
            results: list[LoglikelihoodResult | None] = [None] * len(requests)
            for i in long:
                (results[i],) = self._score_batch(
                    [requests[i].context], [(0, requests[i].continuation)], None, 0
                )
            short = [i for i in range(len(requests)) if results[i] is None]
            if short:
                for i, result in zip(short, self._score([requests[i] for i in short])):
                    results[i] = result
            return results  # type: ignore[return-value]

        # Group continuations by context: each distinct context is run once.
        contexts: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(requests):
            contexts.setdefault(r.context, []).append(i)
        ctx_list = sorted(contexts, key=len, reverse=True)  # similar lengths share a batch

        prefix_len = _common_prefix_len(ctx_list)
        prefix_kv = self._prefix_cache(ctx_list[0][:prefix_len])

        results = [None] * len(requests)
        batches = range(0, len(ctx_list), self.batch_size)
        for start in tqdm(batches, desc="scoring", unit="batch", disable=not self.progress):
            batch = ctx_list[start : start + self.batch_size]
            items = [(b, i) for b, ctx in enumerate(batch) for i in contexts[ctx]]
            scored = self._score_batch(
                [ctx[prefix_len:] for ctx in batch],
                [(b, requests[i].continuation) for b, i in items],
                prefix_kv,
                prefix_len,
            )
            for (_, i), result in zip(items, scored):
                results[i] = result
        return results  # type: ignore[return-value]

    def _score_batch(
        self,
        suffixes: list[tuple[int, ...]],
        continuations: list[tuple[int, tuple[int, ...]]],
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
        prefix_len: int,
    ) -> list[LoglikelihoodResult]:
        """Score continuations (row index, tokens) after a batch of context suffixes."""
        device = self.model.device
        n = len(suffixes)
        lengths = torch.tensor([len(s) for s in suffixes], device=device)
        ids, mask = _right_pad(suffixes, self._pad_id, device)
        positions = prefix_len + torch.arange(ids.shape[1], device=device).expand(n, -1)
        full_mask = torch.cat([torch.ones(n, prefix_len, dtype=mask.dtype, device=device), mask], 1)
        cache = _make_cache(self.model.config, prefix_kv, n)
        hidden, cache = self._forward(ids, full_mask, positions, cache)
        # Distribution over the first continuation token: at each suffix's last real position.
        first_logp = self._log_softmax_head(hidden[torch.arange(n, device=device), lengths - 1])

        token_lp: list[list[float]] = []
        greedy: list[bool] = []
        for row, cont in continuations:
            token_lp.append([first_logp[row, cont[0]].item()])
            greedy.append(bool(first_logp[row].argmax() == cont[0]))

        multi = [j for j, (_, cont) in enumerate(continuations) if len(cont) > 1]
        for start in range(0, len(multi), self.batch_size):
            chunk = multi[start : start + self.batch_size]
            rows = torch.tensor([continuations[j][0] for j in chunk], device=device)
            conts = [continuations[j][1] for j in chunk]
            c_ids, c_mask = _right_pad([c[:-1] for c in conts], self._pad_id, device)
            offsets = (prefix_len + lengths[rows])[:, None]
            c_pos = offsets + torch.arange(c_ids.shape[1], device=device)
            c_full = torch.cat([full_mask[rows], c_mask], 1)
            c_cache = _select_cache(self.model.config, cache, rows)
            c_hidden, _ = self._forward(c_ids, c_full, c_pos, c_cache)
            for k, (j, cont) in enumerate(zip(chunk, conts)):
                logp = self._log_softmax_head(c_hidden[k, : len(cont) - 1])
                targets = torch.tensor(cont[1:], device=device)
                token_lp[j].extend(logp.gather(1, targets[:, None])[:, 0].tolist())
                greedy[j] = greedy[j] and bool((logp.argmax(-1) == targets).all())

        return [
            LoglikelihoodResult(logprob=float(sum(lp)), is_greedy=g, token_logprobs=tuple(lp))
            for lp, g in zip(token_lp, greedy)
        ]

    # ------------------------------------------------------------------ model plumbing
    def _forward(self, ids, mask, positions, cache):
        """Run the decoder body; returns last hidden states (and the updated cache)."""
        module = self.model.base_model if self._manual_head else self.model
        out = module(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
            **cache_kwargs(module, cache),
        )
        return out[0], cache  # the last hidden states (or logits); the cache is filled in place

    def _log_softmax_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Apply the output head to selected positions only, then log-softmax in float32."""
        logits = self._head(hidden) if self._manual_head else hidden
        return torch.log_softmax(logits.float(), dim=-1)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.get_output_embeddings()(hidden)
        cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def _check_manual_head(self) -> bool:
        """Use body + head separately only if that reproduces the model's own logits here."""
        if self.model.get_output_embeddings() is None:
            return False
        ids = torch.tensor([[self._pad_id or 0, 1, 2, 3]], device=self.model.device)
        reference = self.model(input_ids=ids).logits
        manual = self._head(self.model.base_model(input_ids=ids).last_hidden_state)
        return manual.shape == reference.shape and torch.allclose(manual, reference, atol=1e-4)

    @property
    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    def _prefix_cache(self, prefix: tuple[int, ...]):
        """KV cache of the shared prefix, computed once and kept for the next call."""
        if not prefix:
            return None
        if self._prefix is not None and self._prefix[0] == prefix:
            return self._prefix[1]
        ids = torch.tensor([prefix], device=self.model.device)
        cache = _make_cache(self.model.config, None, 1)
        body = self.model.base_model
        body(input_ids=ids, use_cache=True, **cache_kwargs(body, cache))
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefix = (prefix, layers)
        return layers

    def _fit_window(self, request: EncodedRequest) -> EncodedRequest:
        total = len(request.context) + len(request.continuation)
        if total <= self.max_length:
            return request
        if self.truncation == "error" or len(request.continuation) >= self.max_length:
            raise ScoringError(
                f"A request has {total} tokens but the model's context window is "
                f"{self.max_length}. Use fewer or shorter demonstrations, or pass "
                "truncation='left' (--truncation left) to drop the oldest context tokens."
            )
        warnings.warn(
            f"Left-truncating a {total}-token request to the {self.max_length}-token window.",
            stacklevel=3,
        )
        keep = self.max_length - len(request.continuation)
        return EncodedRequest(request.context[-keep:], request.continuation)


def _length(request: EncodedRequest) -> int:
    return len(request.context) + len(request.continuation)


def _common_prefix_len(contexts: list[tuple[int, ...]]) -> int:
    """Longest shared token prefix, leaving at least one token of every context outside it."""
    shortest = min(len(c) for c in contexts)
    first = contexts[0]
    n = 0
    while n < shortest - 1 and all(c[n] == first[n] for c in contexts):
        n += 1
    return n


def _right_pad(seqs: Sequence[Sequence[int]], pad: int, device) -> tuple[torch.Tensor, ...]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long, device=device)
        mask[i, : len(s)] = 1
    return ids, mask


def _make_cache(config, layers, batch: int):
    """A fresh DynamicCache holding the prefix, expanded (not copied) to ``batch`` rows."""
    from transformers import DynamicCache

    if layers is None:
        return DynamicCache(config=config)
    data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)


def _select_cache(config, cache, rows: torch.Tensor):
    """A new cache holding the given batch rows of ``cache``."""
    from transformers import DynamicCache

    data = [(layer.keys[rows], layer.values[rows]) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=data, config=config)


def _sliding_window(config) -> int | None:
    types = getattr(config, "layer_types", None) or []
    if any("sliding" in t for t in types) or getattr(config, "use_sliding_window", False):
        return getattr(config, "sliding_window", None)
    return None
