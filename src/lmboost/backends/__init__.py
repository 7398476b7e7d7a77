"""Backends: the one door to a model. ``load_backend(spec, backend="hf" | "vllm")`` or
``as_backend(loaded_model)``; see :mod:`lmboost.backends.base` for the interface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmboost.backends.base import (
    Backend,
    BackendError,
    LoglikelihoodResult,
    PromptStates,
    RollingResult,
)

if TYPE_CHECKING:
    from lmboost.models.loading import LoadedModel

#: The names ``--backend`` takes.
BACKENDS = ("hf", "vllm")
#: Options of the hf backend's batching that other backends do not take.
HF_OPTIONS = ("batch_size", "truncation", "progress", "max_length")


def load_backend(
    spec: str,
    backend: str = "hf",
    *,
    dtype: str = "float32",
    device: str = "auto",
    trust_remote_code: bool = False,
    tensor_parallel_size: int = 1,
    **options: Any,
) -> Backend:
    """Load the model ``spec`` (catalog alias, local directory, ``.gguf``, hub id) on ``backend``.

    ``device`` places the hf backend's model; vLLM places its own and shards it over
    ``tensor_parallel_size`` GPUs. ``options`` go to the backend: ``batch_size``,
    ``truncation``, ``progress`` for "hf" (vLLM batches by itself and has no truncation, so
    these are dropped there: a request longer than its window is an error); vLLM engine
    arguments for "vllm".
    """
    from lmboost.models.loading import resolve_dtype

    dtype = resolve_dtype(dtype, device)
    if backend == "hf" and tensor_parallel_size != 1:
        raise BackendError(
            "tensor_parallel_size is a vllm backend setting: use --backend vllm to shard a "
            "model over several GPUs."
        )
    if backend == "hf":
        from lmboost.backends.hf import HFBackend
        from lmboost.models.loading import load_model

        loaded = load_model(spec, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
        return HFBackend(loaded, **options)
    if backend == "vllm":
        from lmboost.backends.vllm import VLLMBackend

        engine = {k: v for k, v in options.items() if k not in HF_OPTIONS}
        return VLLMBackend(
            spec, dtype=dtype, trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size, **engine,
        )
    raise BackendError(f"Unknown backend {backend!r}. Choose one of: {', '.join(BACKENDS)}.")


def as_backend(model: Backend | LoadedModel, **options: Any) -> Backend:
    """``model`` itself when it is a backend, else the HF backend over the loaded model."""
    if isinstance(model, Backend):
        return model
    from lmboost.backends.hf import HFBackend

    return HFBackend(model, **options)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "LoglikelihoodResult",
    "PromptStates",
    "RollingResult",
    "as_backend",
    "load_backend",
]
