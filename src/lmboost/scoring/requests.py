"""Turning (context, continuation) strings into token ids the way lm-evaluation-harness does.

The boundary matters: "Sentiment:" + " positive" can tokenize differently alone than together.
We encode the whole string once and split it at the length of the encoded context, after moving
the context's trailing white space onto the continuation, so the continuation's tokens are the
ones the model would really see.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmboost.errors import ScoringError


@dataclass(frozen=True)
class EncodedRequest:
    """Token ids of one request; ``context`` is never empty."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


def encode_request(tokenizer, context: str, continuation: str) -> EncodedRequest:
    """Encode a (context, continuation) pair with the lm-evaluation-harness boundary rule."""
    if not continuation:
        raise ScoringError(
            f"Empty continuation for context {context[-60:]!r}: every request must score text."
        )
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation)
    context_ids = _encode(tokenizer, context)
    cont_ids = whole[len(context_ids) :]
    if whole[: len(context_ids)] != context_ids:
        # The context's last token merged with the continuation: fall back to separate encoding.
        cont_ids = _encode(tokenizer, continuation, special=False)
        whole = context_ids + cont_ids
    if not context_ids:
        context_ids = [_start_token(tokenizer)]
    if not cont_ids:
        raise ScoringError(
            f"Continuation {continuation!r} encodes to no tokens after context {context[-40:]!r}."
        )
    return EncodedRequest(tuple(context_ids), tuple(cont_ids))


def tokens_to_run(tokenizer, prefix: str, contexts: list[str], continuation: str) -> int:
    """The tokens a prefix-cached scorer must run for ``contexts`` that all start with
    ``prefix``, each followed by ``continuation``: the shared prefix once, then each context's
    own tokens."""
    prefix_len = len(encode_request(tokenizer, prefix + "x", " y").context) - 1
    total = sum(len(encode_request(tokenizer, c, continuation).context) for c in contexts)
    return total - (len(contexts) - 1) * prefix_len


def encode_context(tokenizer, context: str) -> tuple[int, ...]:
    """The token ids of ``context`` as :func:`encode_request` encodes it: trailing white space
    dropped (it belongs to the continuation), the BOS (else EOS) token standing in for an empty
    context. Its last token is where the first token of any continuation is predicted."""
    ids = _encode(tokenizer, context.rstrip())
    return tuple(ids) if ids else (_start_token(tokenizer),)


def _start_token(tokenizer) -> int:
    start = tokenizer.bos_token_id
    start = tokenizer.eos_token_id if start is None else start
    if start is None:
        raise ScoringError("Empty context and the tokenizer has no BOS/EOS token to stand in.")
    return start


def _encode(tokenizer, text: str, special: bool = True) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])
