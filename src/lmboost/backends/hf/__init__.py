"""The transformers backend (see :mod:`lmboost.backends.hf.backend`)."""

from lmboost.backends.hf.backend import HFBackend
from lmboost.backends.hf.state import CachedPrefix, KVState

__all__ = ["CachedPrefix", "HFBackend", "KVState"]
