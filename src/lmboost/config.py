"""Where lmboost keeps its cache and finds its data sets; both overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path

from lmboost.errors import DataNotFoundError


def cache_dir() -> Path:
    """Root of lmboost's cache: ``$LMBOOST_CACHE``, else ``~/.cache/lmboost``."""
    root = os.environ.get("LMBOOST_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "lmboost"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Directory holding the shared data sets.

    ``$LMBOOST_DATA`` if set; otherwise the first ``shared/data`` found beside the current
    directory or one of its parents (the layout of a checkout next to ``shared/``).
    """
    root = os.environ.get("LMBOOST_DATA")
    if root:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(f"LMBOOST_DATA={root} is not a directory.")
        return path
    here = Path.cwd().resolve()
    for parent in (here, *here.parents):
        for candidate in (parent / "shared" / "data", parent / "data"):
            if (candidate / "sst2").is_dir():
                return candidate
    raise DataNotFoundError(
        "Could not find the data sets. Set LMBOOST_DATA to the folder that holds "
        "sst2/, agnews/, ... (for example ../shared/data)."
    )
