"""docs/architecture.md stays true: every source, test and benchmark path and every module it
names exists, every sub-package of lmboost is named in it, and the documentation index links
to it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
TEXT = DOC.read_text(encoding="utf-8")
SRC = ROOT / "src" / "lmboost"

# ``src/lmboost/...`` up to the first character that cannot be in a path here (a placeholder such
# as ``<name>`` ends it: ``src/lmboost/cli/<name>_cmd.py`` checks ``src/lmboost/cli/``), and the
# ``tests/*.py`` and ``benchmarks/*.py`` files (not benchmarks/results/, which git ignores).
PATTERN = r"src/lmboost[\w./-]*|(?:tests|benchmarks)/[\w/-]+\.py"
PATHS = sorted({m.rstrip(".,") for m in re.findall(PATTERN, TEXT)})
# Backticked dotted names: `lmboost.x.y`.
MODULES = sorted(set(re.findall(r"`(lmboost(?:\.\w+)+)`", TEXT)))
SUBPACKAGES = sorted(
    ".".join(init.parent.relative_to(SRC.parent).parts)
    for init in SRC.rglob("__init__.py")
    if init.parent != SRC
)


def test_the_page_names_paths_and_modules():
    assert PATHS and MODULES and SUBPACKAGES


@pytest.mark.parametrize("path", PATHS)
def test_every_source_path_exists(path):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which does not exist"


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a parent is missing, or is a module rather than a package
        return None


@pytest.mark.parametrize("name", MODULES)
def test_every_module_named_exists(name):
    """A module, or a name its module defines or lists (`lmboost.x.f`): a ``def``, ``class`` or
    assignment of it, or the name quoted (``__all__``, a lazy ``__getattr__``)."""
    if _find_spec(name) is not None:
        return
    parent, _, attribute = name.rpartition(".")
    spec = _find_spec(parent)
    assert spec is not None and spec.origin, (
        f"docs/architecture.md names `{name}`: no such module (nor is {parent} one)"
    )
    source = Path(spec.origin).read_text(encoding="utf-8")
    word = re.escape(attribute)
    defined = rf"^\s*(?:async\s+)?(?:def|class)\s+{word}\b|^{word}\s*[:=]|[\"']{word}[\"']"
    assert re.search(defined, source, flags=re.M), (
        f"docs/architecture.md names `{name}`: {parent} has no {attribute}"
    )


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_subpackage_is_named(package):
    path = "src/" + package.replace(".", "/")
    assert f"`{package}`" in TEXT or path in TEXT, (
        f"docs/architecture.md does not mention the package {package} (as `{package}` or "
        f"{path}): say where it sits"
    )


def test_top_level_modules_are_named():
    for module in sorted(SRC.glob("*.py")):
        if module.name.startswith("__"):
            continue
        path = f"src/lmboost/{module.name}"
        dotted = f"lmboost.{module.stem}"
        assert path in TEXT or f"`{dotted}`" in TEXT, f"docs/architecture.md omits {path}"


def test_the_index_links_to_the_page():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert "(architecture.md)" in index


def test_relative_links_resolve():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXT):
        if "://" in target:
            continue
        assert (DOC.parent / target).exists(), f"docs/architecture.md links to {target}"
