"""How the installed transformers wants a model called, decided by behaviour, not by signatures.

transformers renames forward arguments between releases (5.24 calls the KV cache ``cache``, where
5.17 calls it ``past_key_values``), and a model's ``forward(**kwargs)`` often swallows a name it
does not know without an error. Reading ``inspect.signature`` therefore answers the wrong
question. Here each question is asked of the model itself, once per model class, on four tokens:

* :func:`cache_argument` -- under which name a KV cache is filled and reused: prefill 3 tokens
  into a fresh cache passed under the candidate name, extend by the 4th, and compare the last
  position with a plain 4-token forward (within 2%, or within 10% and far nearer it than the
  4th token alone: int8 activations round float noise up to a few percent);
* :func:`takes_logits_to_keep` -- whether ``logits_to_keep=1`` runs the output head at the last
  position only and gives that position's logits.

:func:`recorded_forwards` records the input shape of every forward a module runs, to count a
method's model work (forwards and token rows) instead of timing it.

The probes call ``forward`` directly, so forward hooks (a user's, a profiler's) do not see them.
The answers are cached per class. A model that takes a cache under no known name gets one warning
and ``None`` (callers that need a cache raise); nothing falls back silently to a slow path.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from lmboost.errors import BackendError

#: Names a KV cache has been passed under, newest transformers first (the first that works wins,
#: so a release that still accepts an old name with a deprecation warning gets the new one).
CACHE_ARGUMENTS = ("cache", "past_key_values")

_cache_names: dict[type, str | None] = {}
_keeps_logits: dict[type, bool] = {}


def cache_argument(module: torch.nn.Module) -> str | None:
    """The keyword under which ``module``'s forward takes and fills a KV cache, or None (with a
    warning, once per class) when none of :data:`CACHE_ARGUMENTS` works."""
    cls = type(module)
    if cls not in _cache_names:
        found = next((name for name in CACHE_ARGUMENTS if _cache_works(module, name)), None)
        if found is None:
            warnings.warn(
                f"{cls.__name__} takes a KV cache under none of {', '.join(CACHE_ARGUMENTS)} "
                "with the installed transformers: prefix caching is off for it, so scoring and "
                "generation recompute every prefix (slow). Report this with your transformers "
                "version.",
                stacklevel=2,
            )
        _cache_names[cls] = found
    return _cache_names[cls]


def cache_kwargs(module: torch.nn.Module, cache) -> dict:
    """``{name: cache}`` for ``module``'s forward (or ``generate``); {} when ``cache`` is None.
    Raises BackendError when a cache is given but the model takes none."""
    if cache is None:
        return {}
    name = cache_argument(module)
    if name is None:
        raise BackendError(f"{type(module).__name__} takes no KV cache (see the warning above).")
    return {name: cache}


def takes_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether ``model(..., logits_to_keep=1)`` returns the last position's logits alone."""
    cls = type(model)
    if cls not in _keeps_logits:
        _keeps_logits[cls] = _logits_to_keep_works(model)
    return _keeps_logits[cls]


def _probe_ids(module: torch.nn.Module) -> torch.Tensor:
    config = module.config.get_text_config()
    vocab = getattr(config, "vocab_size", None) or 8
    device = getattr(module, "device", None) or next(module.parameters()).device
    return (torch.arange(4, device=device) * 7 + 3).remainder(vocab)[None]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.float(), b.float()
    scale = float(b.abs().max()) or 1.0
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=0, atol=2e-2 * scale))


@torch.inference_mode()
def _cache_works(module: torch.nn.Module, name: str) -> bool:
    from transformers import DynamicCache

    ids = _probe_ids(module)
    try:
        reference = module.forward(input_ids=ids, use_cache=False)[0][:, -1]
        cache = DynamicCache(config=module.config)
        module.forward(input_ids=ids[:, :3], use_cache=True, **{name: cache})
        if cache.get_seq_length() != 3:
            return False
        extended = module.forward(input_ids=ids[:, 3:], use_cache=True, **{name: cache})[0][:, -1]
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RuntimeError):
        return False
    if extended.shape != reference.shape:
        return False
    if _close(extended, reference):
        return True
    # a quantized model's int8 rounding can turn float noise into a few percent: the cache also
    # works when the extension is within 10% and far nearer the whole forward than the token
    # without context
    alone = module.forward(input_ids=ids[:, 3:], use_cache=False)[0][:, -1]
    miss = float((extended.float() - reference.float()).abs().max())
    scale = float(reference.float().abs().max()) or 1.0
    far = float((alone.float() - reference.float()).abs().max())
    return miss < 0.1 * scale and miss < 0.25 * far


@torch.inference_mode()
def _logits_to_keep_works(model: torch.nn.Module) -> bool:
    ids = _probe_ids(model)
    try:
        reference = model.forward(input_ids=ids, use_cache=False).logits[:, -1:]
        kept = model.forward(input_ids=ids, use_cache=False, logits_to_keep=1).logits
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RuntimeError):
        return False
    return _close(kept, reference)


@contextlib.contextmanager
def recorded_forwards(model: torch.nn.Module, *,
                      body: bool = False) -> Iterator[list[tuple[int, int]]]:
    """Record (batch, tokens) of the ``input_ids`` of every forward of ``model`` (with ``body``,
    of its decoder body, which also sees the forwards that skip the output head) while the block
    runs; ``sum(b * t)`` over the list is the token rows run."""
    shapes: list[tuple[int, int]] = []
    hooked = model.get_decoder() if body else model
    handle = hooked.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    try:
        yield shapes
    finally:
        handle.remove()
