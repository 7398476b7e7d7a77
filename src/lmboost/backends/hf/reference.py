"""The plain baseline: one full forward of context + continuation per request, no cache.

It is the definition the engine must match, used by the equivalence tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmboost.backends.base import LoglikelihoodResult
from lmboost.scoring.requests import EncodedRequest


@torch.inference_mode()
def reference_loglikelihood_tokens(
    model: torch.nn.Module, requests: Sequence[EncodedRequest]
) -> list[LoglikelihoodResult]:
    """Score each request with its own full-sequence forward pass."""
    results = []
    for r in requests:
        ids = torch.tensor([r.context + r.continuation], device=model.device)
        logits = model(input_ids=ids).logits[0, len(r.context) - 1 : -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        targets = torch.tensor(r.continuation, device=model.device)
        token_lp = logp.gather(1, targets[:, None])[:, 0]
        results.append(
            LoglikelihoodResult(
                logprob=float(token_lp.sum()),
                is_greedy=bool((logp.argmax(-1) == targets).all()),
                token_logprobs=tuple(token_lp.tolist()),
            )
        )
    return results
