"""The one door to a model: the :class:`Backend` interface every capability calls.

Small like lm-evaluation-harness's ``LM`` class. A backend answers

* ``loglikelihood_tokens(requests)`` -- log P(continuation | context) per request: the total, per
  token, and whether the continuation is the greedy one (exact for multi-token continuations);
* ``loglikelihood_rolling(texts)`` -- the total log-likelihood of whole texts (perplexity);
* ``generate(prompts, config, n=...)`` -- greedy or sampled completions, stop strings, seeds, n
  samples per prompt sharing one prompt encoding;
* ``embed(texts, pooling)`` -- pooled hidden states (bias tests, RAIN's similarity);
* ``prompt_states(contexts)`` -- at each context's last token, where the answer's first token is
  predicted: the last hidden state and the whole next-token distribution (calibration by
  hidden states or distributions, Hidden Calibration and kNN prompting);

and says what it is with ``describe()`` (backend, model, dtype, device), which run records keep.
Token-level requests come from :func:`lmboost.scoring.encode_request`, prompts from
:mod:`lmboost.generation`; both only need the backend's ``tokenizer``.

Implementations: :class:`lmboost.backends.hf.HFBackend` (transformers, prefix-cached) and
:class:`lmboost.backends.vllm.VLLMBackend` (vLLM, for scale). Only the backend package runs
forward passes or knows a library's internals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from lmboost.errors import BackendError, ScoringError

if TYPE_CHECKING:
    import torch

    from lmboost.generation import GenerationConfig, Prompt
    from lmboost.scoring.requests import EncodedRequest


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Log-likelihood of one continuation given its context."""

    logprob: float
    is_greedy: bool
    token_logprobs: tuple[float, ...]


@dataclass(frozen=True)
class RollingResult:
    """The log-likelihood of a whole text: the sum over its ``tokens`` scored tokens."""

    logprob: float
    tokens: int


class PromptStates(NamedTuple):
    """What the model holds at the last token of each of n contexts: ``hidden``, the last hidden
    state of its body (n x hidden size), and ``logprobs``, the log-softmax next-token
    distribution over the whole vocabulary (n x vocabulary); both float32 on the CPU, None when
    not asked for."""

    hidden: torch.Tensor | None
    logprobs: torch.Tensor | None


def rolling_windows(
    n_tokens: int, context_window: int, window: int | None = None, stride: int | None = None
) -> list[tuple[int, int, int]]:
    """The windows that score a text of ``n_tokens`` tokens, as (begin, end, first): windows of
    ``window`` tokens (default and cap: ``context_window``) start every ``stride`` tokens
    (default ``window - 1``: consecutive windows share one token, so every token is scored),
    and each scores positions ``first`` .. ``end - 1``, those no earlier window scored; token 0,
    with nothing before it, never."""
    window = min(window or context_window, context_window)
    stride = stride or max(1, window - 1)
    if not 1 <= stride <= window:
        raise ScoringError(f"stride must lie in [1, window={window}], not {stride}.")
    spans, scored_until = [], 1
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        spans.append((begin, end, max(scored_until, begin + 1)))
        scored_until = end
        if end == n_tokens:
            break
    return spans


class Backend(ABC):
    """A causal LM behind one interface (see the module docstring)."""

    #: The name ``--backend`` selects it by.
    name: ClassVar[str]
    #: The model's tokenizer (a transformers tokenizer for every backend).
    tokenizer: Any
    #: The model spec it was loaded from (alias, directory, hub id).
    spec: str
    #: The dtype its weights run in ("float32", "bfloat16", "float16").
    dtype: str

    @property
    @abstractmethod
    def context_window(self) -> int:
        """The longest sequence (prompt + continuation) the model takes, in tokens."""

    @abstractmethod
    def loglikelihood_tokens(
        self, requests: Sequence[EncodedRequest]
    ) -> list[LoglikelihoodResult]:
        """log P(continuation | context) for each tokenized request, in input order."""

    @abstractmethod
    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[RollingResult]:
        """The log-likelihood of each whole text (every token after the first, in windows of the
        context length when the text is longer)."""

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        config: GenerationConfig | None = None,
        *,
        n: int = 1,
        chat: bool | None = None,
        batch_size: int | None = None,
    ) -> list[list[str]]:
        """``n`` completions of each prompt (a list of n strings per prompt, in input order);
        ``chat=None`` applies the tokenizer's chat template when it has one; ``batch_size``
        prompts run at once where the backend batches by request (backends that batch by
        themselves ignore it)."""

    def embed(self, texts: Sequence[str], pooling: str = "mean") -> torch.Tensor:
        """One pooled hidden-state vector per text (n x hidden, float32)."""
        raise BackendError(
            f"The {self.name} backend does not give hidden states: use --backend hf."
        )

    def prompt_states(
        self, contexts: Sequence[str], *, hidden: bool = True, logprobs: bool = True
    ) -> PromptStates:
        """The last hidden state and/or the next-token log-distribution at the last token of
        each context (encoded as :meth:`score_choices` encodes contexts), in input order."""
        raise BackendError(
            f"The {self.name} backend gives neither hidden states nor full next-token "
            "distributions (hidden and knn calibration need them): use --backend hf."
        )

    def pin_prefix(self, contexts: Sequence[str]) -> int:
        """Keep the shared token prefix of ``contexts`` cached for later calls, where the backend
        caches prefixes itself (HF); returns its length in tokens, 0 where the backend's own
        prefix cache decides (vLLM)."""
        return 0

    def describe(self) -> dict[str, Any]:
        """What ran, for run records: backend, model spec, dtype (and more per backend)."""
        return {"backend": self.name, "model": self.spec, "dtype": self.dtype}

    # ------------------------------------------------------------------ built on the above
    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[LoglikelihoodResult]:
        """log P(continuation | context) for each (context, continuation) string pair."""
        from lmboost.scoring.requests import encode_request

        if len(pairs) == 0:
            raise ScoringError("No requests to score: pass at least one (context, continuation).")
        return self.loglikelihood_tokens([encode_request(self.tokenizer, c, x) for c, x in pairs])

    def score_choices(
        self, contexts: Sequence[str], choices: Sequence[str] | Sequence[Sequence[str]]
    ) -> np.ndarray:
        """N x K matrix of total log-probabilities of each choice after each context; ``choices``
        is one list of K strings shared by all contexts, or one list per context."""
        if isinstance(contexts, str) or len(contexts) == 0:
            raise ScoringError("contexts must be a non-empty list of strings.")
        if isinstance(choices, str) or len(choices) == 0:
            raise ScoringError(
                f"choices must be a list of strings (e.g. [' negative', ' positive']), not "
                f"{choices!r}."
            )
        per_context = [choices] * len(contexts) if isinstance(choices[0], str) else choices
        if len(per_context) != len(contexts):
            raise ScoringError(f"{len(per_context)} choice lists for {len(contexts)} contexts.")
        k = len(per_context[0])
        if k == 0 or any(len(c) != k or isinstance(c, str) for c in per_context):
            raise ScoringError("Every context needs the same, non-zero number of choices.")
        pairs = [(ctx, c) for ctx, cs in zip(contexts, per_context) for c in cs]
        results = self.loglikelihood(pairs)
        return np.array([r.logprob for r in results], dtype=np.float64).reshape(len(contexts), k)
