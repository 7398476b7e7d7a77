"""SentencePiece-BPE tokenizers read from GGUF files, repaired.

A GGUF of a SentencePiece model (``tokenizer.ggml.model = "llama"``: Gemma, Llama 2, Mistral)
stores pieces and scores but no merges; llama.cpp tokenizes it as BPE, merging first the adjacent
pair whose merged piece scores highest. transformers 5.17 reads such a file as a Unigram model,
which splits words differently (Gemma 3: "world" -> "w", "or", "ld"), and its ``GemmaTokenizer``
reloads that saved Unigram as a BPE without merges, one token per character; nor does it add
the BOS token the file asks for (``tokenizer.ggml.add_bos_token``), which Gemma needs (WikiText-2
perplexity 32.8 without, 27.06 with, as before transformers 5). :func:`as_bpe` rebuilds the BPE
that llama.cpp runs: the same pieces and ids, merges ranked by the merged piece's score, and
the BOS token before every text when asked.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def spm_merges(pieces: list[tuple[str, float]], special: set[str]) -> list[tuple[str, str]]:
    """BPE merges for SentencePiece ``pieces`` (``(piece, score)`` in id order): every split of
    a piece into two pieces of the vocabulary, the merges of higher-scoring pieces first (ties:
    the piece's id, then the left part's id). Special and byte pieces are never merged into."""
    ids = {piece: i for i, (piece, _) in enumerate(pieces)}
    ranked = []
    for i, (piece, score) in enumerate(pieces):
        if piece in special or _BYTE_PIECE.fullmatch(piece):
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                ranked.append((-score, i, ids[left], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def as_bpe(tokenizer_json: str, bos: str | None = None) -> str | None:
    """``tokenizer_json`` (a tokenizers ``to_str()``) with its Unigram model replaced by the
    equivalent SentencePiece BPE (see the module docstring) and, given ``bos``, that token put
    before each text (and each of a pair); None when it is not a Unigram."""
    state: dict[str, Any] = json.loads(tokenizer_json)
    model = state["model"]
    if model.get("type") != "Unigram":
        return None
    pieces = [(piece, float(score)) for piece, score in model["vocab"]]
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    if bos is not None:
        state["post_processor"] = _bos_template(bos, vocab[bos])
    special = {t["content"] for t in state.get("added_tokens", []) if t.get("special")}
    unk = pieces[model["unk_id"]][0] if model.get("unk_id") is not None else None
    state["model"] = {
        "type": "BPE",
        "dropout": None,
        "unk_token": unk,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": True,
        "byte_fallback": bool(model.get("byte_fallback")),
        "ignore_merges": False,
        "vocab": vocab,
        "merges": [list(m) for m in spm_merges(pieces, special)],
    }
    return json.dumps(state, ensure_ascii=False)


def _bos_template(bos: str, bos_id: int) -> dict[str, Any]:
    token = {"SpecialToken": {"id": bos, "type_id": 0}}
    return {
        "type": "TemplateProcessing",
        "single": [token, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [token, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }
