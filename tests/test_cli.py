"""The command line: help that teaches, listings, and clear errors with exit status 2."""

from __future__ import annotations

import re

import pytest

from lmboost.cli import main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "models", "tasks", "icl"):
        assert command in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: lmboost" in capsys.readouterr().out


def test_tasks_lists_registry(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "sst2: 2 labels" in out and "agnews" in out


def test_models_info_on_local_directory(tiny_model_dir, capsys):
    assert main(["models", "info", tiny_model_dir]) == 0
    out = capsys.readouterr().out
    assert "LlamaForCausalLM" in out
    assert re.search(r"^layers\s+2$", out, re.M)
    assert re.search(r"^chat template\s+no$", out, re.M)


def test_bad_model_is_a_clear_error(capsys):
    assert main(["models", "info", "./no/such/model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmboost: error: No such file or directory")
    assert "Traceback" not in err


def test_unknown_task_is_a_clear_error(capsys):
    assert main(["tasks", "sst-3"]) == 2
    assert "Unknown task 'sst-3'" in capsys.readouterr().err
