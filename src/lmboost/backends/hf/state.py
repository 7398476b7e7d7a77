"""Cached model states for search: a KV state to extend, fork and widen (RAIN's tree), and a
cached prefix that many questions share (RAIN's self-evaluation)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lmboost.backends.hf.calls import cache_kwargs

if TYPE_CHECKING:
    from lmboost.backends.hf.backend import HFBackend


class KVState:
    """Rows of token sequences run by the model, with their KV cache and the next-token logits
    after each row (``logits``: rows x vocabulary, float32). Extending consumes the state in
    place; :meth:`fork` copies it first. Rows of different lengths (:meth:`extend_rows`) keep an
    attention ``mask`` over the cache (1: a token, 0: padding); None while there is no padding."""

    def __init__(self, backend: HFBackend, cache, logits: torch.Tensor,
                 mask: torch.Tensor | None = None) -> None:
        self.backend = backend
        self.cache = cache
        self.logits = logits
        self.mask = mask

    @classmethod
    @torch.inference_mode()
    def start(cls, backend: HFBackend, ids: Sequence[int]) -> KVState:
        """One row: ``ids`` run once."""
        from transformers import DynamicCache

        state = cls(backend, DynamicCache(config=backend.model.config), None)
        state.extend([list(ids)])
        return state

    @torch.inference_mode()
    def extend(self, ids) -> torch.Tensor:
        """Run ``ids`` (rows x tokens: a nested list or a tensor) after each row; the new
        next-token logits (rows x vocabulary)."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.backend.device)
        padding = {}
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(ids.shape)], 1)
            positions = self.mask.cumsum(-1)[:, -ids.shape[1] :] - 1
            padding = {"attention_mask": self.mask, "position_ids": positions}
        self.logits = self.backend.next_logits(
            input_ids=ids, use_cache=True, **padding, **cache_kwargs(self.backend.model, self.cache)
        )
        return self.logits

    @torch.inference_mode()
    def extend_rows(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Run ``rows[i]`` (token lists of any lengths, at least one token each) after row i, as
        one right-padded batch; the next-token logits after each row's last token. Later
        extensions skip the padding (masked, positions counted over tokens only)."""
        from lmboost.backends.hf.generation import pad_id

        device = self.backend.device
        ids, new = pad_rows([list(r) for r in rows], pad_id(self.backend.tokenizer), device)
        past = self.cache.get_seq_length()
        old = self.mask if self.mask is not None else new.new_ones(len(rows), past)
        self.mask = torch.cat([old, new], 1)
        positions = (self.mask.cumsum(-1)[:, past:] - 1).clamp(min=0)
        last = new.sum(1) - 1
        self.logits = self.backend.logits_at(ids, self.mask, positions, self.cache, last)
        return self.logits

    def fork(self) -> KVState:
        """An independent copy (the cache is copied, not shared)."""
        return KVState(self.backend, copy.deepcopy(self.cache), self.logits, self.mask)

    def repeat(self, n: int) -> KVState:
        """Every row repeated ``n`` times in place (row i becomes rows i*n .. i*n+n-1)."""
        self.cache.batch_repeat_interleave(n)
        self.logits = self.logits.repeat_interleave(n, dim=0)
        if self.mask is not None:
            self.mask = self.mask.repeat_interleave(n, dim=0)
        return self

    def select(self, rows: Sequence[int]) -> KVState:
        """Keep ``rows`` (in that order, repeats allowed), in place."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.logits.device)
        self.cache.batch_select_indices(index)
        self.logits = self.logits[index]
        if self.mask is not None:
            self.mask = self.mask[index]
        return self


@dataclass(frozen=True)
class CachedPrefix:
    """The KV cache (per layer, keys and values of one row) of ``tokens`` run by the model."""

    tokens: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    @torch.inference_mode()
    def run(cls, backend: HFBackend, tokens: Sequence[int]) -> CachedPrefix:
        """Run ``tokens`` once and keep their KV cache."""
        from transformers import DynamicCache

        ids = torch.tensor([list(tokens)], dtype=torch.long, device=backend.device)
        cache = DynamicCache(config=backend.model.config)
        backend.next_logits(input_ids=ids, use_cache=True, **cache_kwargs(backend.model, cache))
        return cls(tuple(tokens), [(layer.keys, layer.values) for layer in cache.layers])

    def cache(self, config, rows: int):
        """A fresh DynamicCache holding the prefix for ``rows`` rows (expanded, not copied)."""
        return expanded_cache(config, self.layers, rows)

    def crop(self, length: int) -> CachedPrefix:
        """The prefix of its first ``length`` tokens (views of the same keys and values)."""
        return CachedPrefix(
            self.tokens[:length], [(k[:, :, :length], v[:, :, :length]) for k, v in self.layers]
        )

    @torch.inference_mode()
    def extend(self, backend: HFBackend, tokens: Sequence[int]) -> CachedPrefix:
        """The prefix followed by ``tokens``: only ``tokens`` are run, after the cached KV (this
        prefix is left as it is)."""
        if not tokens:
            return self
        start = len(self.tokens)
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=backend.device)
        positions = torch.arange(start, start + len(tokens), device=backend.device)[None]
        cache = self.cache(backend.model.config, 1)
        backend.next_logits(
            input_ids=ids, position_ids=positions, use_cache=True,
            **cache_kwargs(backend.model, cache),
        )
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        return CachedPrefix(self.tokens + tuple(tokens), layers)


def expanded_cache(config, layers: list[tuple[torch.Tensor, torch.Tensor]] | None, rows: int):
    """A fresh DynamicCache holding ``layers`` (one row's keys and values per layer) expanded,
    not copied, to ``rows`` rows; empty when ``layers`` is None."""
    from transformers import DynamicCache

    if layers is None:
        return DynamicCache(config=config)
    data = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in layers]
    return DynamicCache(ddp_cache_data=data, config=config)


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
