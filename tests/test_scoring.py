"""The scoring engine must equal a plain full-prompt forward, token for token."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from lmboost.backends import Backend, BackendError
from lmboost.backends.hf.calls import recorded_forwards
from lmboost.errors import ScoringError
from lmboost.scoring import (
    EncodedRequest,
    Scorer,
    encode_request,
    reference_loglikelihood_tokens,
)
from lmboost.scoring.requests import encode_context

PREFIX = (
    "Review: a great movie\nSentiment: positive\n\n"
    "Review: boring and far too long\nSentiment: negative\n\n"
)
QUERIES = ["a great film", "far too boring", "great", "long and boring and far too long movie"]
CHOICES = [" positive", " negative", " Sci/Tech", " not_entailment"]


def _requests():
    return [(PREFIX + f"Review: {q}\nSentiment:", c) for q in QUERIES for c in CHOICES]


def _reference(loaded, requests):
    encoded = [encode_request(loaded.tokenizer, ctx, cont) for ctx, cont in requests]
    return reference_loglikelihood_tokens(loaded.model, encoded)


def _assert_equal(results, reference, atol):
    for got, want in zip(results, reference):
        assert len(got.token_logprobs) == len(want.token_logprobs)
        np.testing.assert_allclose(got.token_logprobs, want.token_logprobs, atol=atol, rtol=0)
        assert got.is_greedy == want.is_greedy


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_engine_matches_full_forward(tiny_model, batch_size):
    requests = _requests()
    # Multi-token continuations must really occur, or the second stage goes untested.
    assert any(len(encode_request(tiny_model.tokenizer, *r).continuation) > 1 for r in requests)
    results = Scorer(tiny_model, batch_size=batch_size).loglikelihood(requests)
    _assert_equal(results, _reference(tiny_model, requests), atol=1e-4)


def test_engine_without_shared_prefix(tiny_model):
    requests = [("great", " movie"), ("Review: far too long", " positive"), ("x", " Sci/Tech")]
    results = Scorer(tiny_model, batch_size=2).loglikelihood(requests)
    _assert_equal(results, _reference(tiny_model, requests), atol=1e-4)


SHORT = ("great", "so dull", "fine", "bad", "ok", "not good", "loved it", "meh")
LONG = "a slow, dull and far too long film that goes on and on and on about nothing at all"


def _mixed_requests(queries=(*SHORT, LONG), prefix=PREFIX, choices=CHOICES):
    return [(prefix + f"Review: {q}\nSentiment:", c) for q in queries for c in choices]


def _token_rows(loaded, scorer, requests) -> tuple[int, int]:
    """(token rows the scorer's forwards ran, those of the shared prefix, the contexts right-
    padded to the longest after it and the continuations' further tokens padded likewise); the
    scorer is warmed up on other requests first."""
    scorer.loglikelihood([("a b", " c"), ("a d", " c")])
    encoded = [encode_request(loaded.tokenizer, *r) for r in requests]
    contexts = list(dict.fromkeys(e.context for e in encoded))
    prefix = len(os.path.commonprefix(contexts))
    tails = [len(e.continuation) - 1 for e in encoded if len(e.continuation) > 1]
    with recorded_forwards(loaded.model, body=True) as shapes:
        scorer.loglikelihood(requests)
    longest = max(len(c) for c in contexts) - prefix
    padded = prefix + len(contexts) * longest + len(tails) * max(tails, default=0)
    return sum(b * t for b, t in shapes), padded


def test_mixed_lengths_are_packed_and_match_full_forward(tiny_model):
    """Short contexts share rows instead of being padded to the longest (a server's batch of
    requests in flight): fewer token rows run, the same scores as a full forward."""
    requests = _mixed_requests()
    scorer = Scorer(tiny_model, batch_size=16)
    run, padded = _token_rows(tiny_model, scorer, requests)
    assert run < 0.7 * padded
    _assert_equal(scorer.loglikelihood(requests), _reference(tiny_model, requests), atol=1e-4)
    unpacked = Scorer(tiny_model, batch_size=16, packing=False)
    assert _token_rows(tiny_model, unpacked, requests) == (padded, padded)
    _assert_equal(unpacked.loglikelihood(requests), _reference(tiny_model, requests), atol=1e-4)


def test_a_model_ignoring_custom_masks_is_scored_padded(tiny_model, monkeypatch):
    """Packing is used only where the model honours a 4D attention mask (checked on first use):
    one that ignores it is scored right-padded, still exactly."""
    scorer = Scorer(tiny_model, batch_size=16)
    original = scorer._forward

    def ignoring(ids, mask, positions, cache):
        return original(ids, torch.zeros_like(mask) if mask.dim() == 4 else mask, positions, cache)

    monkeypatch.setattr(scorer, "_forward", ignoring)
    requests = _mixed_requests()
    _assert_equal(scorer.loglikelihood(requests), _reference(tiny_model, requests), atol=1e-4)


def test_greedy_flag_true_for_argmax_continuation(tiny_model):
    ctx = PREFIX + "Review: great"
    ids = torch.tensor([tiny_model.tokenizer(ctx)["input_ids"]])
    with torch.no_grad():
        best = int(tiny_model.model(input_ids=ids).logits[0, -1].argmax())
    context = tuple(ids[0].tolist())
    scorer = Scorer(tiny_model)
    (result,) = scorer.loglikelihood_tokens([EncodedRequest(context, (best,))])
    assert result.is_greedy
    (other,) = scorer.loglikelihood_tokens([EncodedRequest(context, ((best + 1) % 50,))])
    assert not other.is_greedy


def test_broken_position_ids_are_caught(tiny_model, monkeypatch):
    """The equivalence check fails when the cached prefix is not offset correctly."""
    scorer = Scorer(tiny_model, batch_size=4)
    original = scorer._forward

    def shifted(ids, mask, positions, cache):
        return original(ids, mask, positions - 1, cache)

    monkeypatch.setattr(scorer, "_forward", shifted)
    results = scorer.loglikelihood(_requests())
    diff = max(
        abs(a.logprob - b.logprob) for a, b in zip(results, _reference(tiny_model, _requests()))
    )
    assert diff > 1e-3


def test_broken_prefix_cache_is_caught(tiny_model, monkeypatch):
    scorer = Scorer(tiny_model, batch_size=4)
    original = scorer._prefix_cache

    def corrupted(prefix):
        layers = original(prefix)
        return None if layers is None else [(k + 0.5, v) for k, v in layers]

    monkeypatch.setattr(scorer, "_prefix_cache", corrupted)
    results = scorer.loglikelihood(_requests())
    diff = max(
        abs(a.logprob - b.logprob) for a, b in zip(results, _reference(tiny_model, _requests()))
    )
    assert diff > 1e-3


def test_score_choices_matrix(tiny_model):
    contexts = [PREFIX + f"Review: {q}\nSentiment:" for q in QUERIES]
    matrix = Scorer(tiny_model).score_choices(contexts, [" positive", " negative"])
    assert matrix.shape == (len(QUERIES), 2)
    want = _reference(tiny_model, [(c, w) for c in contexts for w in [" positive", " negative"]])
    np.testing.assert_allclose(matrix.ravel(), [r.logprob for r in want], atol=1e-4)


def test_boundary_moves_trailing_space_to_continuation(tiny_model):
    tok = tiny_model.tokenizer
    a = encode_request(tok, "Sentiment: ", "positive")
    b = encode_request(tok, "Sentiment:", " positive")
    assert a == b
    whole = tok("Sentiment: positive")["input_ids"]
    assert list(a.context + a.continuation) == whole


def test_boundary_uses_whole_encoding(tiny_model):
    """Continuation tokens come from encoding context + continuation together."""
    tok = tiny_model.tokenizer
    req = encode_request(tok, "Review: great movie\nSentiment:", " positive")
    assert list(req.context + req.continuation) == tok("Review: great movie\nSentiment: positive")[
        "input_ids"
    ]


def test_empty_requests_raise(tiny_model):
    with pytest.raises(ScoringError, match="No requests"):
        Scorer(tiny_model).loglikelihood([])


def test_empty_continuation_raises(tiny_model):
    with pytest.raises(ScoringError, match="Empty continuation"):
        Scorer(tiny_model).loglikelihood([("Review: x", "")])


def test_too_long_context_errors_then_truncates(tiny_model):
    long_ctx = "great movie " * 200
    with pytest.raises(ScoringError, match="context window"):
        Scorer(tiny_model).loglikelihood([(long_ctx, " positive")])
    with pytest.warns(UserWarning, match="Left-truncating"):
        (r,) = Scorer(tiny_model, truncation="left").loglikelihood([(long_ctx, " positive")])
    enc = encode_request(tiny_model.tokenizer, long_ctx, " positive")
    window = 128 - len(enc.continuation)
    (want,) = reference_loglikelihood_tokens(
        tiny_model.model, [EncodedRequest(enc.context[-window:], enc.continuation)]
    )
    assert abs(r.logprob - want.logprob) < 1e-4


@pytest.mark.slow
def test_engine_matches_full_forward_on_smollm2(smollm2):
    requests = _requests() + _mixed_requests()  # the mixed lengths are packed
    results = Scorer(smollm2, batch_size=4).loglikelihood(requests)
    _assert_equal(results, _reference(smollm2, requests), atol=1e-4)


def test_repeated_requests_are_scored_once(tiny_model, monkeypatch):
    scorer = Scorer(tiny_model, batch_size=4)
    seen: list[int] = []
    original = scorer._score

    def counting(requests):
        seen.append(len(requests))
        return original(requests)

    monkeypatch.setattr(scorer, "_score", counting)
    requests = _requests()
    first = scorer.loglikelihood(requests + requests[:3])
    assert seen == [len(requests)]
    again = scorer.loglikelihood(requests[:5] + [("Review: new\nSentiment:", " positive")])
    assert seen == [len(requests), 1]
    assert again[:5] == first[:5]


@pytest.fixture(scope="module")
def tiny_gemma3():
    """A 4-layer random Gemma 3 (three sliding-window layers, one global) with a short window."""
    from conftest import build_tokenizer
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from lmboost.models.loading import LoadedModel

    tok = build_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        sliding_window=80, layer_types=["sliding_attention"] * 3 + ["full_attention"],
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    return LoadedModel(model=Gemma3ForCausalLM(config).eval(), tokenizer=tok, spec="tiny-gemma3",
                       path=None)


def test_sliding_window_model_packs_short_contexts(tiny_gemma3):
    """Contexts short enough to share a row inside the 80-token window are packed on a
    sliding-window model too, and scored exactly."""
    requests = _mixed_requests((*SHORT, "far too long and dull"), prefix="", choices=CHOICES[:2])
    scorer = Scorer(tiny_gemma3, batch_size=16)
    run, padded = _token_rows(tiny_gemma3, scorer, requests)
    assert run < padded  # padding runs at least `padded`
    _assert_equal(scorer.loglikelihood(requests), _reference(tiny_gemma3, requests), atol=1e-4)


def test_sliding_window_model_matches_full_forward(tiny_gemma3):
    """Requests on both sides of the 80-token window are scored exactly."""
    requests = _requests()
    lengths = [len(encode_request(tiny_gemma3.tokenizer, *r).context) for r in requests]
    assert min(lengths) < 80 <= max(lengths)
    with pytest.warns(UserWarning, match="longer than the model's sliding window"):
        results = Scorer(tiny_gemma3, batch_size=3).loglikelihood(requests)
    _assert_equal(results, _reference(tiny_gemma3, requests), atol=1e-4)


# --------------------------------------------------------------------------- prompt states


def _plain_states(loaded, context: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden state and next-token log-probabilities of one plain full forward."""
    ids = torch.tensor([list(encode_context(loaded.tokenizer, context))])
    with torch.inference_mode():
        out = loaded.model(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[-1][0, -1].float(), torch.log_softmax(out.logits[0, -1].float(), -1)


@pytest.mark.parametrize("manual_head", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_prompt_states_equal_a_plain_forward(tiny_model, batch_size, manual_head):
    contexts = [PREFIX + f"Review: {q}\nSentiment:" for q in QUERIES]
    contexts += [contexts[0] + " ", "x", contexts[1]]  # trailing space, no shared prefix, repeat
    scorer = Scorer(tiny_model, batch_size=batch_size)
    scorer.__dict__["_manual_head"] = manual_head  # both ways of reaching the hidden state
    states = scorer.prompt_states(contexts)
    assert states.hidden.shape == (7, 32)
    assert states.logprobs.shape == (7, len(tiny_model.tokenizer))
    for row, context in enumerate(contexts):
        hidden, logprobs = _plain_states(tiny_model, context)
        torch.testing.assert_close(states.hidden[row], hidden, atol=1e-4, rtol=0)
        torch.testing.assert_close(states.logprobs[row], logprobs, atol=1e-4, rtol=0)
    # The distribution is the one scoring reads the first answer token from.
    for row, context in enumerate(contexts[:4]):
        request = encode_request(tiny_model.tokenizer, context, " positive")
        (result,) = scorer.loglikelihood_tokens([request])
        assert result.token_logprobs[0] == pytest.approx(
            float(states.logprobs[row, request.continuation[0]]), abs=1e-4
        )


def test_prompt_states_one_part_and_errors(tiny_model):
    scorer = Scorer(tiny_model)
    contexts = [PREFIX + "Review: great\nSentiment:", "Review: dull\nSentiment:"]
    both = scorer.prompt_states(contexts)
    hidden_only = scorer.prompt_states(contexts, logprobs=False)
    assert hidden_only.logprobs is None
    torch.testing.assert_close(hidden_only.hidden, both.hidden, atol=1e-5, rtol=0)
    assert scorer.prompt_states(contexts, hidden=False).hidden is None
    with pytest.raises(BackendError, match="hidden states, log-probabilities or both"):
        scorer.prompt_states(contexts, hidden=False, logprobs=False)
    with pytest.raises(ScoringError, match="non-empty list"):
        scorer.prompt_states("Review: great")
    with pytest.raises(ScoringError, match="context window is 128"):
        scorer.prompt_states(["great " * 200])
    with pytest.warns(UserWarning, match="Left-truncating"):
        cut = Scorer(tiny_model, truncation="left").prompt_states(["great " * 200])
    assert cut.hidden.shape == (1, 32)


def test_a_backend_without_prompt_states_says_so():
    class Bare(Backend):
        name = "bare"
        context_window = 8

        def loglikelihood_tokens(self, requests):
            return []

        def loglikelihood_rolling(self, texts):
            return []

        def generate(self, prompts, config=None, *, n=1, chat=None):
            return []

    with pytest.raises(BackendError, match="The bare backend gives neither.*--backend hf"):
        Bare().prompt_states(["Review: great"])


def test_prompt_states_on_a_sliding_window_model(tiny_gemma3):
    contexts = [ctx for ctx, _ in _requests()[:: len(CHOICES)]]
    lengths = [len(encode_context(tiny_gemma3.tokenizer, c)) for c in contexts]
    assert min(lengths) < 80 <= max(lengths)
    states = Scorer(tiny_gemma3, batch_size=3).prompt_states(contexts)
    for row, context in enumerate(contexts):
        hidden, logprobs = _plain_states(tiny_gemma3, context)
        torch.testing.assert_close(states.hidden[row], hidden, atol=1e-4, rtol=0)
        torch.testing.assert_close(states.logprobs[row], logprobs, atol=1e-4, rtol=0)


def test_tokens_to_run_counts_the_shared_prefix_once(tiny_model):
    from lmboost.scoring.requests import encode_request, tokens_to_run

    tok = Scorer(tiny_model).tokenizer
    prefix = "Review: a fine film\nSentiment: positive\n\n"
    contexts = [prefix + "x is dull\nSentiment:", prefix + "y is a gem\nSentiment:"]
    ids = [encode_request(tok, c, " negative").context for c in contexts]
    assert tokens_to_run(tok, prefix, contexts[:1], " negative") == len(ids[0])
    shared = next(i for i, (a, b) in enumerate(zip(*ids)) if a != b)  # the prefix's tokens
    assert tokens_to_run(tok, prefix, contexts, " negative") == len(ids[0]) + len(ids[1]) - shared
