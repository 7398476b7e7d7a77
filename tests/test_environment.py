"""The environment is the lock: every locked package at its locked version, nothing else.

``make test-latest`` runs the suite in an unlocked environment on purpose and sets
LMBOOST_UNLOCKED=1, which skips this check there (and only there).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
#: Installed but not locked: the project itself and the venv's own installer.
OUTSIDE_THE_LOCK = {"lmboost", "pip"}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if match:
            pins[_name(match[1])] = match[2]
    return pins


@pytest.mark.skipif(os.environ.get("LMBOOST_UNLOCKED") == "1", reason="make test-latest")
def test_installed_packages_equal_the_lock():
    pins = locked()
    installed = {
        _name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
    }
    assert {name: installed.get(name) for name in pins if installed.get(name) != pins[name]} == {}
    assert set(installed) - set(pins) - OUTSIDE_THE_LOCK == set()


def test_the_lock_pins_every_package_once_with_hashes():
    text = LOCK.read_text()
    pins = re.findall(r"^([A-Za-z0-9._-]+)==", text, flags=re.M)
    assert len(pins) == len(set(map(_name, pins))) > 100
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    assert all("--hash=sha256:" in block for block in blocks if re.match(r"^[A-Za-z0-9]", block))
    assert "torch==2.13.0+cpu" in text and "torchvision" not in locked()
