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
        if inspect.isclass(cls) and issubclass(cls, BaseException)
    }


def source_trees() -> dict[str, ast.AST]:
    """The parsed modules of lmboost, by path, without errors.py itself."""
    return {
        str(path.relative_to(SRC)): ast.parse(path.read_text(encoding="utf-8"))
        for path in SRC.rglob("*.py")
        if path != SRC / "errors.py"
    }


def raised_names(tree: ast.AST) -> set[str]:
    """The names of the classes ``tree`` raises by name: ``raise X(...)`` or ``raise X``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name):
                names.add(exc.id)
    return names


def test_every_error_is_documented_and_derives_from_lmboost_error():
    classes = error_classes()
    assert set(OLD_HOMES) <= set(classes)
    for name, cls in classes.items():
        assert issubclass(cls, errors.LmboostError), name
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


def test_every_specific_error_is_raised_somewhere():
    """A class nobody raises is dead; LmboostError itself is only the base to catch."""
    raised = set().union(*map(raised_names, source_trees().values()))
    unused = sorted(set(error_classes()) - raised - {"LmboostError"})
    assert unused == []


def test_no_bare_lmboost_error_is_constructed():
    """Every error names its kind: a subclass of LmboostError, never the bare base class."""
    bare = [
        f"{path}:{node.lineno}"
        for path, tree in source_trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "LmboostError"
    ]
    assert bare == []


def test_specific_errors_keep_their_message_and_are_caught_as_lmboost_error(tmp_path):
    from lmboost.evaluation.store import check_out
    from lmboost.models.loading import resolve_dtype

    with pytest.raises(errors.ConfigError, match="Unknown dtype 'float8'") as info:
        resolve_dtype("float8")
    assert isinstance(info.value, errors.LmboostError)
    assert not isinstance(info.value, ValueError)  # one hierarchy, not a built-in too
    (tmp_path / "out").write_text("")
    with pytest.raises(errors.OutputFolderError, match="is a file, not a folder"):
        check_out(tmp_path / "out")


@pytest.mark.parametrize("name", sorted(OLD_HOMES))
def test_old_import_paths_still_work(name):
    for module in OLD_HOMES[name]:
        assert getattr(importlib.import_module(module), name) is getattr(errors, name)
