"""Model catalog and loading: aliases of packaged models, local directories, GGUF files, hub ids."""

from lmboost.models.catalog import CATALOG, DEFAULT_MODEL, CatalogEntry, get_entry
from lmboost.models.loading import (
    LoadedModel,
    cached_gguf_dir,
    is_cached,
    load_model,
    resolve_device,
)

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "LoadedModel",
    "cached_gguf_dir",
    "get_entry",
    "is_cached",
    "load_model",
    "resolve_device",
]
