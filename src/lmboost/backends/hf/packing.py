"""Packed scoring batches: contexts, and their continuations, laid end to end in a few rows.

A server's batch is the requests in flight, of any lengths. Right-padded, every row runs as long
as the longest, and on a CPU a padding token costs as much as a real one. Packed, a row holds
several sequences one after another; a 4D attention mask lets each attend only to the cached
prefix and to itself (a continuation also to its whole context), and positions restart after the
prefix for each, so the model computes for each sequence what it computes for it alone, over
(nearly) real tokens only. A context's continuations of more than one token sit in the same row
as their context, so one forward scores everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: Tokens per packed row (a longer context gets a row of its own length). Short rows keep the
#: attention over each row, which the mask makes mostly wasted, small.
ROW_TOKENS = 128


@dataclass
class PackedBatch:
    """The inputs of a packed forward and where to read its results.

    ``reads`` are the (row, column) positions whose next-token distributions are needed;
    ``context_read[b]`` indexes the one after context ``b``'s last token, and
    ``continuation_reads[j]`` those after each but the last token of continuation ``j``.
    """

    ids: torch.Tensor  # rows x width
    positions: torch.Tensor  # rows x width
    mask: torch.Tensor  # rows x 1 x width x (prefix + width), additive (0 or the dtype's min)
    reads: list[tuple[int, int]]
    context_read: list[int]
    continuation_reads: list[list[int]]


def token_rows(
    suffixes: Sequence[Sequence[int]],
    continuations: Sequence[tuple[int, Sequence[int]]],
    row_tokens: int = ROW_TOKENS,
) -> tuple[int, int]:
    """(padded, packed): the token rows a right-padded batch (contexts, then a second pass over
    continuations longer than one token) and a packed one would run."""
    tails = [len(c) - 1 for _, c in continuations if len(c) > 1]
    padded = len(suffixes) * max(map(len, suffixes)) + len(tails) * max(tails, default=0)
    lengths = _unit_lengths(suffixes, continuations)
    rows = _rows(lengths, row_tokens)
    return padded, len(rows) * _width(rows, lengths)


def pack(
    suffixes: Sequence[Sequence[int]],
    continuations: Sequence[tuple[int, Sequence[int]]],
    prefix_len: int,
    *,
    pad_id: int,
    dtype: torch.dtype,
    device: torch.device,
    row_tokens: int = ROW_TOKENS,
) -> PackedBatch:
    """Pack context ``suffixes`` (run after a cached prefix of ``prefix_len`` tokens) and the
    ``continuations`` (context index, tokens) scored after them."""
    lengths = _unit_lengths(suffixes, continuations)
    rows = _rows(lengths, row_tokens)
    width = _width(rows, lengths)
    n_rows = len(rows)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n_rows, width), dtype=torch.long)
    allow = torch.zeros((n_rows, width, prefix_len + width), dtype=torch.bool)
    allow[:, :, :prefix_len] = True
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    tails: dict[int, list[int]] = {}
    for j, (b, cont) in enumerate(continuations):
        if len(cont) > 1:
            tails.setdefault(b, []).append(j)
    reads: list[tuple[int, int]] = []
    context_read = [0] * len(suffixes)
    continuation_reads: list[list[int]] = [[] for _ in continuations]

    def place(row: int, at: int, tokens: Sequence[int], start: int) -> None:
        n = len(tokens)
        ids[row, at : at + n] = torch.tensor(tokens, dtype=torch.long)
        positions[row, at : at + n] = prefix_len + start + torch.arange(n)
        allow[row, at : at + n, prefix_len + at : prefix_len + at + n] = causal[:n, :n]

    for row, units in rows.items():
        at = 0
        for b in units:
            context = suffixes[b]
            place(row, at, context, 0)
            context_read[b] = len(reads)
            reads.append((row, at + len(context) - 1))
            context_span = slice(prefix_len + at, prefix_len + at + len(context))
            at += len(context)
            for j in tails.get(b, []):
                fed = continuations[j][1][:-1]
                place(row, at, fed, len(context))
                allow[row, at : at + len(fed), context_span] = True
                continuation_reads[j] = list(range(len(reads), len(reads) + len(fed)))
                reads.extend((row, at + k) for k in range(len(fed)))
                at += len(fed)
        pads = torch.arange(at, width)
        allow[row, pads, prefix_len + pads] = True  # a padding token sees itself: no empty row
    mask = torch.zeros(allow.shape, dtype=dtype).masked_fill_(~allow, torch.finfo(dtype).min)
    return PackedBatch(
        ids=ids.to(device),
        positions=positions.to(device),
        mask=mask[:, None].to(device),
        reads=reads,
        context_read=context_read,
        continuation_reads=continuation_reads,
    )


def _unit_lengths(
    suffixes: Sequence[Sequence[int]], continuations: Sequence[tuple[int, Sequence[int]]]
) -> list[int]:
    """Tokens each context needs in its row: its own and its continuations' fed tokens."""
    lengths = [len(s) for s in suffixes]
    for b, cont in continuations:
        lengths[b] += max(0, len(cont) - 1)
    return lengths


def _width(rows: dict[int, list[int]], lengths: list[int]) -> int:
    return max(sum(lengths[b] for b in units) for units in rows.values())


def _rows(lengths: list[int], row_tokens: int) -> dict[int, list[int]]:
    """First-fit decreasing: ``{row: [context index, ...]}``, each row at most ``row_tokens``
    tokens or one context's length, whichever is larger."""
    capacity = max(row_tokens, *lengths, 1)
    rows: dict[int, list[int]] = {}
    filled: list[int] = []
    for b in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, f in enumerate(filled) if f + lengths[b] <= capacity), len(filled))
        if row == len(filled):
            filled.append(0)
        filled[row] += lengths[b]
        rows.setdefault(row, []).append(b)
    return rows
