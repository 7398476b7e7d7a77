"""SentencePiece-BPE tokenizers from GGUF files (lmboost.models.spm): the rebuilt BPE tokenizes as
llama.cpp's SentencePiece tokenizer does (adjacent pair whose merged piece scores highest first)."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer

from lmboost.models.spm import as_bpe, spm_merges

# id order; scores as a GGUF stores them (higher merges first); "<0x41>" a byte piece
PIECES = [("<unk>", 0.0), ("<bos>", 0.0), ("<0x41>", 0.0), ("▁", -1.0), ("a", -2.0),
          ("b", -3.0), ("c", -4.0), ("d", -5.0), ("bc", -6.0), ("ab", -7.0), ("▁a", -8.0),
          ("abc", -9.0), ("cd", -10.0), ("▁abcd", -11.0), ("<0x", -12.0), ("41>", -13.0),
          ("0", -14.0), ("x", -15.0), ("4", -16.0), ("1", -17.0), (">", -18.0), ("<", -19.0)]


def unigram_json() -> str:
    """A tokenizers Unigram as transformers 5.17 builds it from a SentencePiece GGUF."""
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 1, "content": "<bos>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": None, "post_processor": None, "decoder": None,
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                  "vocab": [[p, s] for p, s in PIECES]},
    })


def llama_cpp_spm(text: str) -> list[str]:
    """The reference: split into characters, then repeatedly merge the adjacent pair whose
    merged piece is in the vocabulary with the highest score (leftmost on ties)."""
    score = dict(PIECES)
    symbols = list(text.replace(" ", "▁"))
    while True:
        best = max(((score[a + b], -i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))
                    if a + b in score), default=None)
        if best is None:
            return symbols
        i = -best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


def test_merges_rank_by_the_merged_piece_and_skip_special_and_byte_pieces():
    special = {"<unk>", "<bos>"}
    merges = spm_merges(PIECES, special)
    # "bc" (-6) before "ab" (-7) before "▁a" (-8); "abc" from both of its splits, left id first
    assert merges[:5] == [("b", "c"), ("a", "b"), ("▁", "a"), ("a", "bc"), ("ab", "c")]
    assert ("<0x", "41>") not in merges  # never merge text into a byte piece
    assert all(len(left) and len(right) for left, right in merges)


@pytest.mark.parametrize("text", ["abc", " abcd", "abcd", " a bc", "cab", "dcba", " abc abcd"])
def test_rebuilt_bpe_tokenizes_as_the_spm_reference(text):
    tokenizer = Tokenizer.from_str(as_bpe(unigram_json()))
    assert tokenizer.encode(text).tokens == llama_cpp_spm(text)


def test_the_unigram_it_replaces_splits_differently_and_non_unigram_is_left_alone():
    unigram = Tokenizer.from_str(unigram_json())
    assert unigram.encode("abc").tokens != llama_cpp_spm("abc")  # why the repair exists
    bpe = as_bpe(unigram_json())
    assert as_bpe(bpe) is None
    assert json.loads(bpe)["model"]["vocab"] == {p: i for i, (p, _) in enumerate(PIECES)}


def test_bos_goes_before_each_text_when_the_file_asks_for_it():
    tokenizer = Tokenizer.from_str(as_bpe(unigram_json(), "<bos>"))
    assert tokenizer.encode("abc").tokens == ["<bos>", "abc"]
    assert tokenizer.encode("abc").ids == [1, 11]
    assert tokenizer.encode("ab", "cd").tokens == ["<bos>", "ab", "<bos>", "cd"]
    assert tokenizer.encode("abc", add_special_tokens=False).tokens == ["abc"]
