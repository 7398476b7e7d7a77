"""lmboost: get more out of small and frozen language models.

The Python API mirrors the command line::

    from lmboost import load_backend, load_model, Scorer, get_task, run_icl, ICLConfig

Names are imported lazily, so ``import lmboost`` (and ``lmboost --help``) stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "load_backend": "lmboost.backends",
    "load_model": "lmboost.models",
    "Scorer": "lmboost.scoring",
    "get_task": "lmboost.tasks",
    "list_tasks": "lmboost.tasks",
    "task_from_file": "lmboost.tasks",
    "get_calibrator": "lmboost.calibration",
    "ICLConfig": "lmboost.icl",
    "run_icl": "lmboost.icl",
    "GenerateRunConfig": "lmboost.generation",
    "run_generate": "lmboost.generation",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'lmboost' has no attribute {name!r}")
