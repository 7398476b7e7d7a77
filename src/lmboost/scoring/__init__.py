"""Scoring: log-likelihoods of continuations. Requests are encoded here; the engine is the
backend's (:mod:`lmboost.backends`): ``Scorer`` is the prefix-cached HF backend under its
historical name."""

from lmboost.backends.base import LoglikelihoodResult
from lmboost.scoring.requests import EncodedRequest, encode_request

__all__ = [
    "EncodedRequest",
    "LoglikelihoodResult",
    "Scorer",
    "encode_request",
    "reference_loglikelihood_tokens",
]


def __getattr__(name: str):
    # Imported on first use: the HF backend itself imports this package's requests module.
    if name == "Scorer":
        from lmboost.backends.hf import HFBackend

        return HFBackend
    if name == "reference_loglikelihood_tokens":
        from lmboost.backends.hf.reference import reference_loglikelihood_tokens

        return reference_loglikelihood_tokens
    raise AttributeError(f"module 'lmboost.scoring' has no attribute {name!r}")
