"""The transformers backend: a prefix-cached engine for scoring, and generation, embeddings and
the cached states RAIN searches over, all on one loaded model.

Scoring is lm-evaluation-harness's ``loglikelihood``, fast. For requests (context, continuation)
it returns log P(continuation | context), per token and in total, and whether the continuation is
the greedy one. Three things make it fast:

1. the token prefix shared by every context (instruction + demonstrations) is run once and its
   KV cache reused for every request;
2. each distinct context is run once (one forward per example, right-padded in batches: padding
   after the real tokens cannot change them under causal attention); the output head is applied
   only at the positions that are scored, not at every position of the prompt;
3. continuations longer than one token are scored exactly, token by token, in a second batched
   forward over the continuation tokens alone, reusing the example's own cache;
4. a batch of unlike lengths (a server's requests in flight) is packed instead (:mod:`.packing`):
   contexts and their continuations share rows under a 4D attention mask, one forward, no
   padding to the longest.

Everything lmboost knows about transformers' internals (cache classes and the name they are
passed under, skipping the output head, reaching the model's body, padding, custom attention
masks, context and sliding windows) lives in this sub-package, decided by behaviour
(:mod:`lmboost.backends.hf.calls`).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from lmboost.backends.base import (
    Backend,
    BackendError,
    LoglikelihoodResult,
    PromptStates,
    RollingResult,
    rolling_windows,
)
from lmboost.backends.hf import generation, packing
from lmboost.backends.hf.calls import cache_argument, cache_kwargs, takes_logits_to_keep
from lmboost.backends.hf.generation import context_window
from lmboost.backends.hf.state import CachedPrefix, KVState, expanded_cache, pad_rows
from lmboost.errors import ScoringError
from lmboost.models.loading import LoadedModel
from lmboost.scoring.requests import EncodedRequest, encode_context

if TYPE_CHECKING:
    from lmboost.generation import GenerationConfig, Prompt

#: Scored requests remembered per backend (the oldest forgotten first), so repeats are free
#: but a long-running server's memory stays bounded.
MEMO_SIZE = 200_000


class HFBackend(Backend):
    """A transformers model (a :class:`~lmboost.models.LoadedModel`) behind the Backend interface.

    ``batch_size`` contexts per scoring forward and prompts per generation batch. ``truncation``
    decides what happens to a scoring request longer than the context window: "error" (default)
    raises a ScoringError; "left" drops the oldest context tokens with a warning. ``progress``
    shows a progress bar over scoring batches. ``max_length`` caps scoring requests below the
    model's context window. ``max_batch_tokens`` caps a scoring batch's padded size (rows x
    longest row after the cached prefix; default ``batch_size`` x 512): a very long context
    runs in a small batch of its own instead of padding ``batch_size - 1`` short ones to its
    length. ``packing`` (default on) lets a batch of unlike lengths run packed (:mod:`.packing`)
    where that runs fewer token rows; the scores are the same either way.
    """

    name = "hf"

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int = 16,
        max_length: int | None = None,
        truncation: str = "error",
        progress: bool = False,
        max_batch_tokens: int | None = None,
        packing: bool = True,
    ) -> None:
        if truncation not in ("error", "left"):
            raise ScoringError(f"truncation must be 'error' or 'left', not {truncation!r}.")
        if batch_size < 1:
            raise ScoringError(f"batch_size must be at least 1, not {batch_size}.")
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.spec = loaded.spec
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens or batch_size * 512
        self.truncation = truncation
        self.progress = progress
        self.packing = packing
        config = self.model.config.get_text_config()
        self.max_length = max_length or self.context_window
        self.sliding_window = _sliding_window(config)
        self._prefix: CachedPrefix | None = None
        self._pinned: dict[tuple[int, ...], CachedPrefix] = {}
        self._memo: OrderedDict[EncodedRequest, LoglikelihoodResult] = OrderedDict()

    @classmethod
    def of_module(cls, module: torch.nn.Module, tokenizer=None, **options) -> HFBackend:
        """The backend over a bare transformers model (a pruned or quantized copy, say)."""
        spec = getattr(module.config, "_name_or_path", "") or type(module).__name__
        return cls(LoadedModel(model=module, tokenizer=tokenizer, spec=spec, path=None), **options)

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def context_window(self) -> int:
        """``max_position_embeddings`` (2048 when the model declares none)."""
        return context_window(self.model)

    @property
    def eos_token_ids(self) -> set[int]:
        """The token ids that end a generation (the model's, else the tokenizer's)."""
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())

    @property
    def hidden_size(self) -> int:
        """The width of the model's hidden states (what :meth:`embed` returns)."""
        return self.model.config.get_text_config().hidden_size

    def describe(self) -> dict:
        return {**super().describe(), "device": str(self.device)}

    def _causal(self, what: str) -> None:
        if self.loaded.is_encoder:
            raise ScoringError(f"'{self.spec}' is an encoder; {what} needs a causal LM.")

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[Prompt],
        config: GenerationConfig | None = None,
        *,
        n: int = 1,
        chat: bool | None = None,
        batch_size: int | None = None,
    ) -> list[list[str]]:
        """``n`` completions of each prompt; ``batch_size`` prompts at a time (default: the
        backend's), ``batch_size * n`` rows while decoding."""
        from lmboost.generation import GenerationConfig, GenerationError, check_request

        config = config or GenerationConfig()
        if self.loaded.is_encoder:
            raise GenerationError(f"'{self.spec}' is an encoder; generation needs a causal LM.")
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise GenerationError(f"batch_size must be at least 1, not {size}.")
        encoded = check_request(self.tokenizer, prompts, config, n, chat, self.context_window)
        if config.seed is not None:
            torch.manual_seed(config.seed)
        results: list[list[str]] = []
        while len(results) < len(encoded):
            batch = encoded[len(results) : len(results) + size]
            with _backing_off(size) as failed:
                texts = generation.generate_batch(self.loaded, batch, config, n)
            if failed:
                size //= 2  # and the same prompts again
                self.batch_size = min(self.batch_size, size)
                continue
            results.extend(texts)
        return results

    # ------------------------------------------------------------------ rolling log-likelihood
    @torch.inference_mode()
    def loglikelihood_rolling(
        self, texts: Sequence[str], *, window: int | None = None, stride: int | None = None
    ) -> list[RollingResult]:
        """Each text's log-likelihood (the tokenizer's special tokens added, as in training);
        long texts in windows of ``window`` tokens (default: the context window) every
        ``stride`` tokens (default: ``window - 1``, so every token after the first is scored),
        each scoring only tokens no earlier window scored."""
        self._causal("scoring")
        if isinstance(texts, str) or len(texts) == 0:
            raise ScoringError("loglikelihood_rolling needs a non-empty list of texts.")
        results = []
        for text in texts:
            ids = torch.tensor(self.tokenizer(text, verbose=False)["input_ids"], dtype=torch.long)
            total, count, _ = self.rolling_nll(ids, window=window, stride=stride)
            results.append(RollingResult(logprob=-total, tokens=count))
        return results

    @torch.inference_mode()
    def rolling_nll(
        self, ids: torch.Tensor, *, window: int | None = None, stride: int | None = None
    ) -> tuple[float, int, int]:
        """(summed NLL, scored tokens, windows) of the 1-D token ids ``ids``, strided: windows
        of ``window`` tokens (capped at the context window) start every ``stride`` tokens, and
        each scores only the tokens no earlier window scored. The first token is never scored."""
        if ids.ndim != 1 or len(ids) < 2:
            raise ScoringError("A rolling log-likelihood needs at least 2 tokens of text.")
        spans = rolling_windows(len(ids), self.context_window, window, stride)
        total, count = 0.0, 0
        for begin, end, first in spans:
            chunk = ids[begin:end].to(self.device)
            logits = self.model(input_ids=chunk[None], use_cache=False).logits[0, :-1].float()
            nll = -torch.log_softmax(logits, dim=-1).gather(1, chunk[1:, None])[:, 0]
            total += float(nll[first - begin - 1 :].double().sum())
            count += end - first
        return total, count, len(spans)

    @torch.inference_mode()
    def run(self, ids: torch.Tensor) -> None:
        """Run the B x L token ids through the model, outputs discarded (calibration passes
        that forward hooks observe, throughput timing)."""
        self.model(input_ids=ids.to(self.device), use_cache=False)

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """The model's float32 logits at every position of the B x L token ids."""
        return self.model(input_ids=ids.to(self.device), use_cache=False).logits.float()

    # ------------------------------------------------------------------ embeddings
    @torch.inference_mode()
    def embed(
        self,
        texts: Sequence[str],
        pooling: str = "mean",
        *,
        special_tokens: bool = True,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """One float32 vector per text (n x hidden): the last hidden states of the model's body
        (no output head) pooled over the text's own tokens: ``mean``, ``last`` or ``first``.

        ``special_tokens`` adds the tokenizer's special tokens (fed to the model; left out of
        causal LMs' pools, kept in encoders', as their training did). Texts are run sorted by
        length, right-padded, ``batch_size`` at a time; padding changes no vector."""
        if pooling not in ("mean", "last", "first"):
            raise BackendError(f"Unknown pooling {pooling!r}; choose mean, last or first.")
        if isinstance(texts, str) or len(texts) == 0:
            raise BackendError("embed needs a non-empty list of texts.")
        size = batch_size or 32
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        body = self.body()
        parts: list[torch.Tensor] = []
        starts = range(0, len(order), size)
        for start in tqdm(starts, desc="encoding", unit="batch", disable=not progress):
            chunk = order[start : start + size]
            batch = self.tokenizer(
                [texts[i] for i in chunk],
                padding=True,
                padding_side="right",
                add_special_tokens=special_tokens,
                truncation=True,
                max_length=self.context_window,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            mask = batch["attention_mask"].to(self.device)
            ids = batch["input_ids"].to(self.device)
            if body is not None:
                hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            else:
                out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                hidden = out.hidden_states[-1].float()
            if not self.loaded.is_encoder:  # pool over the text's own tokens only
                mask = mask * (1 - batch["special_tokens_mask"].to(self.device))
            empty = (mask.sum(dim=1) == 0).nonzero().flatten().tolist()
            if empty:
                raise BackendError(
                    f"{texts[chunk[empty[0]]]!r} has no tokens besides special tokens to pool."
                )
            parts.append(_pool(hidden, mask, pooling).cpu())
        vectors = torch.empty(len(texts), parts[0].shape[1])
        vectors[order] = torch.cat(parts)
        return vectors

    def body(self):
        """The model without its output head (transformers' ``base_model`` / ``get_decoder``),
        or None when it has no separate body."""
        if self.loaded.is_encoder:
            return self.model.base_model
        get = getattr(self.model, "get_decoder", None)
        try:
            body = get() if get is not None else None
        except (AttributeError, NotImplementedError, ValueError):
            return None
        return None if body is None or body is self.model else body

    # ------------------------------------------------------------------ states for search
    def prefill(self, ids: Sequence[int]) -> KVState:
        """Run ``ids`` once; the state to extend, fork and read next-token logits from."""
        return KVState.start(self, ids)

    def prefix(self, tokens: Sequence[int]) -> CachedPrefix:
        """Run ``tokens`` once and keep their KV cache, for :meth:`last_logits`."""
        return CachedPrefix.run(self, tokens)

    @torch.inference_mode()
    def last_logits(
        self, rows: list[list[int]], prefix: CachedPrefix | None = None
    ) -> torch.Tensor:
        """Next-token logits (float32) after each row of token ids, run as one left-padded
        batch. With ``prefix`` (whose tokens begin every row) only the rest of each row is run,
        after the prefix's cached KV."""
        start = len(prefix.tokens) if prefix is not None else 0
        ids, mask = pad_rows([row[start:] for row in rows], self._pad_id, self.device, left=True)
        positions = start + (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {}
        if prefix is not None:
            mask = torch.cat([mask.new_ones(len(rows), start), mask], 1)
            extra = cache_kwargs(self.model, prefix.cache(self.model.config, len(rows)))
        return self.next_logits(
            input_ids=ids, attention_mask=mask, position_ids=positions, **extra
        )

    def next_logits(self, **inputs) -> torch.Tensor:
        """``model(**inputs)``'s logits at the last position of each row (float32), the output
        head run at that position only where the model can."""
        if takes_logits_to_keep(self.model):
            inputs["logits_to_keep"] = 1
        return self.model(**inputs).logits[:, -1].float()

    @torch.inference_mode()
    def branch_logits(
        self,
        prefix: CachedPrefix | None,
        stems: list[list[int]],
        branches: list[list[list[int]]],
    ) -> torch.Tensor:
        """Next-token logits (float32) after ``prefix + stems[i] + branches[i][j]``, one row per
        branch in order: each stem run once, all of them as one right-padded batch after the
        prefix's cached KV, then every branch after its stem as one more batch. Stems and
        branches need a token at least."""
        cache = expanded_cache(self.model.config, prefix.layers if prefix else None, len(stems))
        state = KVState(self, cache, None)
        state.extend_rows(stems)
        state.select([i for i, group in enumerate(branches) for _ in group])
        return state.extend_rows([branch for group in branches for branch in group])

    def logits_at(self, ids, mask, positions, cache, last: torch.Tensor) -> torch.Tensor:
        """Run a padded batch (filling ``cache``); the float32 logits at position ``last[i]``
        of each row, the output head run at those positions only where the model allows."""
        hidden, _ = self._forward(ids, mask, positions, cache)
        picked = hidden[torch.arange(len(ids), device=ids.device), last]
        return (self._head(picked) if self._manual_head else picked).float()

    @property
    def caches_prefixes(self) -> bool:
        """Whether the model takes a KV cache (so prefixes can be run once and reused)."""
        return cache_argument(self.model) is not None

    # ------------------------------------------------------------------ engine
    @torch.inference_mode()
    def loglikelihood_tokens(self, requests: Sequence[EncodedRequest]) -> list[LoglikelihoodResult]:
        """The engine on already-tokenized requests (see ``encode_request``).

        Each distinct request is scored once per Scorer: repeats, within a call or across calls
        (zero-shot prompts under several seeds, say), are answered from memory (the
        ``MEMO_SIZE`` most recently used).
        """
        self._causal("scoring")
        if len(requests) == 0:
            raise ScoringError("No requests to score.")
        requests = [self._fit_window(r) for r in requests]
        todo = list(dict.fromkeys(r for r in requests if r not in self._memo))
        scored = dict(zip(todo, self._score(todo))) if todo else {}
        results = [scored[r] if r in scored else self._memo[r] for r in requests]
        self._memo.update(scored)
        for r in requests:
            self._memo.move_to_end(r)
        while len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return results

    def pin_prefix(self, contexts: Sequence[str]) -> int:
        """Keep the KV cache of the token prefix that ``contexts`` share (at least two, encoded
        as :meth:`score_choices` encodes them) for every later call whose contexts all start
        with it, whatever else each call shares: a server pins each task's instruction and
        demonstrations once. Returns the prefix's length in tokens."""
        if len(contexts) < 2:
            raise ScoringError("pin_prefix needs at least two contexts to find their prefix.")
        encoded = [encode_context(self.tokenizer, c) for c in contexts]
        tokens = encoded[0][: _common_prefix_len(encoded)]
        if tokens and tokens not in self._pinned:
            self._pinned[tokens] = self.prefix(tokens)
        return len(tokens)

    def _score(self, requests: list[EncodedRequest]) -> list[LoglikelihoodResult]:
        """Score distinct requests: shared prefix once, then batches of distinct contexts.

        With a sliding attention window (Gemma 3, Mistral) a request that does not fit inside
        the window is scored on its own, without the shared prefix or padding, so the model's
        sliding cache sees exactly what it sees in generation.
        """
        window = self.sliding_window
        too_long = [r for r in requests if window is not None and _length(r) >= window]
        if too_long:
            warnings.warn(
                f"{len(too_long)} of {len(requests)} requests are longer than the model's sliding "
                f"window ({window} tokens); scoring them one context at a time (slower).",
                stacklevel=3,
            )
        # Group continuations by context: each distinct context is run once.
        contexts: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(requests):
            contexts.setdefault(r.context, []).append(i)

        def score(batch, prefix_kv, prefix_len):
            items = [(b, i) for b, ctx in enumerate(batch) for i in contexts[ctx]]
            suffixes = [ctx[prefix_len:] for ctx in batch]
            continuations = [(b, requests[i].continuation) for b, i in items]
            scored = self._score_packed(suffixes, continuations, prefix_kv, prefix_len)
            if scored is None:
                scored = self._score_batch(suffixes, continuations, prefix_kv, prefix_len)
            per_context: list[list[LoglikelihoodResult]] = [[] for _ in batch]
            for (b, _), result in zip(items, scored):
                per_context[b].append(result)
            return per_context

        alone = {r.context for r in too_long}
        scored = self._over_contexts(list(contexts), score, alone, progress=self.progress)
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for ctx, indices in contexts.items():
            for i, result in zip(indices, scored[ctx]):
                results[i] = result
        return results  # type: ignore[return-value]

    def _over_contexts(
        self,
        contexts: list[tuple[int, ...]],
        run: Callable[[list, list | None, int], list],
        alone: set[tuple[int, ...]],
        *,
        progress: bool = False,
    ) -> dict[tuple[int, ...], Any]:
        """``{context: result}`` of ``run(batch, prefix_kv, prefix_len)`` (one result per context
        of the batch) over distinct ``contexts``. Those in ``alone`` (longer than a sliding
        window) run one at a time, without the shared prefix or padding, so that the model's
        sliding cache sees what it sees in generation; the rest run sorted by length (similar
        lengths share a batch) after their shared prefix's cached KV, ``batch_size`` at a time
        but no more rows than ``max_batch_tokens`` allows at the batch's longest length, the
        batch halved when it runs out of memory."""
        results = {c: run([c], None, 0)[0] for c in contexts if c in alone}
        shared = sorted((c for c in contexts if c not in alone), key=len, reverse=True)
        if not shared:
            return results
        prefix_kv, prefix_len = self._prefix_for(shared[0][: _common_prefix_len(shared)])
        bar = tqdm(total=len(shared), desc="scoring", unit="context", disable=not progress)
        start = 0
        while start < len(shared):
            longest = max(1, len(shared[start]) - prefix_len)  # sorted: the first is longest
            size = max(1, min(self.batch_size, self.max_batch_tokens // longest))
            batch = shared[start : start + size]
            with _backing_off(self.batch_size) as failed:
                rows = run(batch, prefix_kv, prefix_len)
            if failed:
                self.batch_size //= 2  # and the same contexts again
                continue
            results.update(zip(batch, rows))
            start += len(batch)
            bar.update(len(batch))
        bar.close()
        return results

    @torch.inference_mode()
    def prompt_states(
        self, contexts: Sequence[str], *, hidden: bool = True, logprobs: bool = True
    ) -> PromptStates:
        """At the last token of each context (where :meth:`score_choices` reads the first
        answer token's distribution): the last hidden state of the body (after its final norm,
        as ``output_hidden_states`` gives it) and the log-softmax next-token distribution.

        Run like scoring: each distinct context once, after the shared prefix's cached KV, in
        right-padded batches (a context longer than a sliding window alone, without padding).
        """
        self._causal("prompt states")
        if isinstance(contexts, str) or len(contexts) == 0:
            raise ScoringError("prompt_states needs a non-empty list of context strings.")
        if not (hidden or logprobs):
            raise BackendError("prompt_states: ask for hidden states, log-probabilities or both.")
        encoded = [self._fit_context(encode_context(self.tokenizer, c)) for c in contexts]
        distinct = list(dict.fromkeys(encoded))
        window = self.sliding_window
        alone = {c for c in distinct if window is not None and len(c) >= window}
        states = self._over_contexts(
            distinct,
            lambda batch, prefix_kv, prefix_len: self._states_batch(
                [c[prefix_len:] for c in batch], prefix_kv, prefix_len, logprobs
            ),
            alone,
        )
        return PromptStates(
            hidden=torch.stack([states[c][0] for c in encoded]) if hidden else None,
            logprobs=torch.stack([states[c][1] for c in encoded]) if logprobs else None,
        )

    def _states_batch(
        self,
        suffixes: list[tuple[int, ...]],
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
        prefix_len: int,
        logprobs: bool,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(last hidden state, next-token log-probabilities or None) after each suffix."""
        inputs = self._suffix_batch(suffixes, prefix_kv, prefix_len)
        ids, full_mask, positions, cache, lengths = inputs
        n, last = len(suffixes), lengths - 1
        rows = torch.arange(n, device=ids.device)
        if self._manual_head:  # the body's output is the last hidden state; the head runs here
            body_out, _ = self._forward(ids, full_mask, positions, cache)
            hidden = body_out[rows, last]
            logp = self._log_softmax_head(hidden) if logprobs else None
        else:
            out = self.model(
                input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                output_hidden_states=True, **cache_kwargs(self.model, cache),
            )
            hidden = out.hidden_states[-1][rows, last]
            logp = torch.log_softmax(out.logits[rows, last].float(), -1) if logprobs else None
        hidden = hidden.float().cpu()
        logp = logp.cpu() if logp is not None else None
        return [(hidden[i], logp[i] if logp is not None else None) for i in range(n)]

    def _score_packed(
        self,
        suffixes: list[tuple[int, ...]],
        continuations: list[tuple[int, tuple[int, ...]]],
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
        prefix_len: int,
    ) -> list[LoglikelihoodResult] | None:
        """Score as :meth:`_score_batch` does, in one packed forward (:mod:`.packing`); None
        when packing would run more token rows than padding (lengths alike, as in a sorted
        offline batch), would reach past a sliding window, or does not reproduce the padded
        scores on this model (checked once), and always when ``packing`` is off."""
        if not self.packing:
            return None
        row_tokens, window = packing.ROW_TOKENS, self.sliding_window
        if window is not None:  # each row inside the window: its mask is then exact
            row_tokens = min(row_tokens, window - 1 - prefix_len)
        padded, packed_rows = packing.token_rows(suffixes, continuations, row_tokens)
        if packed_rows >= padded or not self._packs:
            return None
        packed = self._pack(suffixes, continuations, prefix_len, row_tokens=row_tokens)
        if window is not None and prefix_len + packed.ids.shape[1] >= window:
            return None
        return self._run_packed(packed, continuations, prefix_kv)

    def _pack(self, suffixes, continuations, prefix_len, **options) -> packing.PackedBatch:
        return packing.pack(
            suffixes, continuations, prefix_len, pad_id=self._pad_id,
            dtype=next(self.model.parameters()).dtype, device=self.model.device, **options,
        )

    def _run_packed(
        self,
        packed: packing.PackedBatch,
        continuations: list[tuple[int, tuple[int, ...]]],
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> list[LoglikelihoodResult]:
        cache = expanded_cache(self.model.config, prefix_kv, len(packed.ids))
        hidden, _ = self._forward(packed.ids, packed.mask, packed.positions, cache)
        rows, columns = zip(*packed.reads)
        logp = self._log_softmax_head(hidden[list(rows), list(columns)])
        results = []
        for (b, cont), tail in zip(continuations, packed.continuation_reads):
            at = logp[[packed.context_read[b], *tail]]
            targets = torch.tensor(cont, device=at.device)
            token_lp = at.gather(1, targets[:, None])[:, 0].tolist()
            results.append(LoglikelihoodResult(
                logprob=float(sum(token_lp)), is_greedy=bool((at.argmax(-1) == targets).all()),
                token_logprobs=tuple(token_lp),
            ))
        return results

    @functools.cached_property
    @torch.inference_mode()
    def _packs(self) -> bool:
        """Whether a packed forward (a 4D attention mask, positions restarting per sequence)
        gives this model's scores: checked on first use, one made-up row of three contexts and
        continuations of one to three tokens against each context scored alone."""
        vocab = self.model.config.get_text_config().vocab_size
        ids = [(7 * i + 3) % vocab for i in range(12)]
        prefix = self.prefix(ids[:3]).layers if self.caches_prefixes else None
        start = 3 if prefix is not None else 0
        suffixes = [tuple(ids[start:5]), tuple(ids[5:6]), tuple(ids[6:9])]
        continuations = [(0, tuple(ids[9:10])), (1, tuple(ids[10:12])), (2, tuple(ids[9:12]))]
        want = [
            self._score_batch([suffixes[b]], [(0, cont)], prefix, start)[0]
            for b, cont in continuations
        ]
        try:
            packed = self._pack(suffixes, continuations, start)
            got = self._run_packed(packed, continuations, prefix)
        except (TypeError, ValueError, RuntimeError, IndexError):
            return False
        tolerance = 1e-3 if self.dtype == "float32" else 0.1
        return all(
            abs(g.logprob - w.logprob) <= tolerance * max(1.0, abs(w.logprob))
            for g, w in zip(got, want)
        )

    def _score_batch(
        self,
        suffixes: list[tuple[int, ...]],
        continuations: list[tuple[int, tuple[int, ...]]],
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
        prefix_len: int,
    ) -> list[LoglikelihoodResult]:
        """Score continuations (row index, tokens) after a batch of context suffixes."""
        inputs = self._suffix_batch(suffixes, prefix_kv, prefix_len)
        ids, full_mask, positions, cache, lengths = inputs
        device, n = ids.device, len(suffixes)
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
            c_ids, c_mask = pad_rows([c[:-1] for c in conts], self._pad_id, device)
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
    def _suffix_batch(
        self,
        suffixes: list[tuple[int, ...]],
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
        prefix_len: int,
    ) -> tuple[torch.Tensor, ...]:
        """The inputs of a right-padded batch of context suffixes run after the prefix's cached
        KV: (ids, attention mask over prefix + suffix, positions, cache, suffix lengths)."""
        device, n = self.model.device, len(suffixes)
        ids, mask = pad_rows(suffixes, self._pad_id, device)
        positions = prefix_len + torch.arange(ids.shape[1], device=device).expand(n, -1)
        full_mask = torch.cat([mask.new_ones(n, prefix_len), mask], 1)
        lengths = torch.tensor([len(s) for s in suffixes], device=device)
        return ids, full_mask, positions, expanded_cache(self.model.config, prefix_kv, n), lengths

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

    @functools.cached_property
    @torch.inference_mode()
    def _manual_head(self) -> bool:
        """Use body + head separately only if that reproduces the model's own logits here
        (checked on first use)."""
        if self.model.get_output_embeddings() is None:
            return False
        ids = torch.tensor([[self._pad_id or 0, 1, 2, 3]], device=self.model.device)
        reference = self.model.forward(input_ids=ids).logits  # forward(): hooks see no probe
        manual = self._head(self.model.base_model.forward(input_ids=ids).last_hidden_state)
        return manual.shape == reference.shape and torch.allclose(manual, reference, atol=1e-4)

    @property
    def _pad_id(self) -> int:
        return generation.pad_id(self.tokenizer)

    def _prefix_for(self, common: tuple[int, ...]) -> tuple[list | None, int]:
        """(KV layers, length) of the prefix a batch sharing ``common`` runs after: the longest
        start a pinned prefix shares with ``common`` when it covers at least half of it (the
        pinned cache sliced: attention is causal, so the KV of a prefix's first m tokens is that
        of those m tokens alone), else ``common`` itself, kept for the next call; (None, 0) for
        a model that takes no KV cache."""
        if not self.caches_prefixes:  # every context runs whole
            return None, 0
        best, shared = None, 0
        for tokens, cached in self._pinned.items():
            m = next((i for i, (a, b) in enumerate(zip(tokens, common)) if a != b),
                     min(len(tokens), len(common)))
            if m > shared:
                best, shared = cached, m
        if best is not None and 2 * shared >= len(common):
            return [(k[:, :, :shared], v[:, :, :shared]) for k, v in best.layers], shared
        return self._prefix_cache(common), len(common)

    def _prefix_cache(self, prefix: tuple[int, ...]):
        """KV cache of the shared prefix, computed once and kept for the next call."""
        if not prefix:
            return None
        if self._prefix is None or self._prefix.tokens != prefix:
            self._prefix = self.prefix(prefix)
        return self._prefix.layers

    def _fit_context(self, ids: tuple[int, ...]) -> tuple[int, ...]:
        """``ids`` if they fit the window, else an error or (``truncation="left"``) the newest
        tokens that fit."""
        if len(ids) <= self.max_length:
            return ids
        if self.truncation == "error":
            raise ScoringError(
                f"A context has {len(ids)} tokens but the model's context window is "
                f"{self.max_length}. Use fewer or shorter demonstrations, or pass "
                "truncation='left' (--truncation left) to drop the oldest context tokens."
            )
        warnings.warn(
            f"Left-truncating a {len(ids)}-token context to the {self.max_length}-token window.",
            stacklevel=3,
        )
        return ids[-self.max_length :]

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


@contextlib.contextmanager
def _backing_off(size: int):
    """Run the block; on an out-of-memory error at a batch ``size`` above 1, warn and set the
    yielded flag (the caller halves its batch and retries), else re-raise."""
    failed = _Flag()
    try:
        yield failed
    except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
        if not _out_of_memory(err) or size == 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        warnings.warn(
            f"Out of memory at batch size {size}: continuing at {size // 2}.", stacklevel=4
        )
        failed.set()


class _Flag:
    """A boolean set from inside a context manager."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def __bool__(self) -> bool:
        return self.value


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA's, or the CPU allocator's)."""
    text = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text or (
        "can't allocate memory" in text
    )


def _pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool ``hidden`` (batch x tokens x dim) over the tokens ``mask`` (batch x tokens) keeps."""
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "last":
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask * positions).argmax(dim=1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)
