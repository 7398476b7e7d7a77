"""lmboost.errors holds every exception class lmboost raises for the user to fix."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import lmboost
import lmboost.errors as errors

SRC = Path(lmboost.__file__).parent

# Where each class used to live: those modules re-export it, so old imports keep working.
OLD_HOMES = {
    "GenerationError": ["lmboost.generation", "lmboost.generation.generate"],
    "EvaluationError": ["lmboost.evaluation", "lmboost.evaluation.metrics"],
    "RecipeError": ["lmboost.training", "lmboost.training.recipes"],
    "MixtureError": ["lmboost.instruct", "lmboost.instruct.sources"],
    "ServeConfigError": ["lmboost.serving", "lmboost.serving.config"],
    "RequestError": ["lmboost.serving.engine"],
    "BackendError": ["lmboost.backends", "lmboost.backends.base"],
    "CalibrationError": ["lmboost.calibration", "lmboost.calibration.base"],
}


def error_classes() -> dict[str, type]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.LmboostError)
    }


def test_every_error_is_documented_and_derives_from_lmboost_error():
    classes = error_classes()
    assert set(OLD_HOMES) <= set(classes)
    for name, cls in classes.items():
        assert cls.__module__ == "lmboost.errors"
        assert cls.__doc__ and cls.__doc__.strip(), name
        assert name in errors.__doc__, f"{name} is missing from the hierarchy in the docstring"


def test_no_public_exception_class_outside_errors_py():
    """A public exception class anywhere else in lmboost belongs in lmboost/errors.py."""
    outside = []
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = [ast.unparse(b) for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                outside.append(f"{path.relative_to(SRC)}: {node.name}({', '.join(bases)})")
    assert outside == []


@pytest.mark.parametrize("name", sorted(OLD_HOMES))
def test_old_import_paths_still_work(name):
    for module in OLD_HOMES[name]:
        assert getattr(importlib.import_module(module), name) is getattr(errors, name)
