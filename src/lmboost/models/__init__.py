"""Model catalog and loading: aliases of packaged models, local directories, GGUF files, hub ids."""

from lmboost.models.catalog import CATALOG, DEFAULT_MODEL, CatalogEntry, get_entry
from lmboost.models.loading import (
    LoadedModel,
    cache_status,
    cached_gguf_dir,
    check_remote_code,
    is_cached,
    load_model,
    locate_model,
    repair_cache,
    resolve_device,
    verify_cache,
)

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "LoadedModel",
    "cache_status",
    "cached_gguf_dir",
    "check_remote_code",
    "get_entry",
    "is_cached",
    "load_model",
    "locate_model",
    "repair_cache",
    "resolve_device",
    "verify_cache",
]
