"""Scoring: log-likelihoods of continuations, with a shared-prefix KV cache."""

from lmboost.scoring.engine import LoglikelihoodResult, Scorer
from lmboost.scoring.reference import reference_loglikelihood_tokens
from lmboost.scoring.requests import EncodedRequest, encode_request

__all__ = [
    "EncodedRequest",
    "LoglikelihoodResult",
    "Scorer",
    "encode_request",
    "reference_loglikelihood_tokens",
]
