"""The command line: help that teaches, listings, and clear errors with exit status 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lmboost
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


# --------------------------------------------------------------------------- help examples


def _help_texts() -> list[str]:
    """What `lmboost --help` and `lmboost COMMAND --help` print."""
    import contextlib
    import io

    from lmboost.cli import COMMANDS

    texts = []
    for argv in (["--help"], *([m.NAME, "--help"] for m in COMMANDS)):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
            main(argv)
        texts.append(buffer.getvalue())
    return texts


def test_every_help_example_is_one_runnable_command():
    import shlex

    from lmboost.cli import build_parser

    parser = build_parser()
    examples = []
    for text in _help_texts():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if not line.strip().startswith("lmboost ") or lines[i - 1].rstrip().endswith("\\"):
                continue
            command = line.strip()
            j = i
            while command.endswith("\\"):
                j += 1
                command = command[:-1] + " " + lines[j].strip()
            examples.append(command)
    assert len(examples) > 30
    templates = []
    for command in examples:
        args = parser.parse_args(shlex.split(command, comments=True)[1:])  # exits on an error
        templates += [args.template] if getattr(args, "template", None) else []
    # A "\n" in a --template example stays the two characters the shell passes on.
    assert templates and all("{text}\\nSentiment:" in t for t in templates)


# --------------------------------------------------------------------------- a user's data file


def _reviews(folder, rows=None):
    rows = rows or [("a great movie", 1), ("boring and far too long", 0), ("great film", 1),
                    ("too boring", 0), ("great and long", 1), ("boring", 0)]
    path = folder / "movies.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    return path


FLAGS = ["--template", "Review: {text}\\nSentiment:", "--label-words", "0=negative,1=positive"]


def test_tasks_previews_a_data_file_given_by_flags(tmp_path, capsys):
    data = _reviews(tmp_path)
    assert main(["tasks", "--task", str(data), *FLAGS, "--instruction", "Be brief."]) == 0
    out = capsys.readouterr().out
    assert out.startswith("movies: 2 labels (negative/positive)")
    assert "label values -> words: 0 -> 'negative', 1 -> 'positive'" in out
    assert "Be brief.\n\nReview: a great movie\nSentiment:\n" in out
    assert "options: ' negative' | ' positive'" in out
    assert main(["tasks", str(data), *FLAGS]) == 0  # positional works too
    assert main(["tasks", str(data), "--task", str(data)]) == 2
    assert "Give the task once" in capsys.readouterr().err
    assert main(["tasks", "sst2", "--template", "{text}"]) == 2
    assert "--template describe(s) a data file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pool", "{data}", "--pool-size", "2"], "Give either --pool or --pool-size, not both."),
        (["--pool-size", "9"], "--pool-size 9 must be between 1 and 5 (the data has 6 rows)"),
        (["--text-columns", "title"], "not in --text-columns ['title']"),
        (["--label-column", "y"], "missing label column 'y'"),
    ],
)
def test_data_file_errors_name_the_cli_flags(tmp_path, capsys, extra, message):
    data = _reviews(tmp_path)
    extra = [x.replace("{data}", str(data)) for x in extra]
    assert main(["tasks", "--task", str(data), *FLAGS, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "pool_size=" not in err and "pool_path" not in err


def test_shots_without_a_pool_name_the_cli_flags(tmp_path, capsys):
    data = _reviews(tmp_path)
    argv = ["icl", "--task", str(data), *FLAGS, "--shots", "1", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no demonstration pool" in err
    assert "(--pool) or hold out part of the data file as the pool (--pool-size)" in err


def test_empty_texts_are_a_warning_with_line_numbers(tmp_path):
    data = _reviews(tmp_path, [("fine", 1), ("", 0), ("good", 1), (" ", 0)])
    with pytest.warns(UserWarning, match=r"2 row\(s\) with empty input text \(text\) at line"):
        assert main(["tasks", str(data), *FLAGS]) == 0
    # As a user sees it: one line on stderr, without a source location.
    done = _lmboost(["tasks", str(data), *FLAGS], stdout=subprocess.DEVNULL)
    assert done.returncode == 0
    assert done.stderr == (
        f"lmboost: warning: {data}: 2 row(s) with empty input text (text) at line(s) 3, 5; the "
        "model sees only the template there. Fill them in or drop them.\n"
    )


def _lmboost(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """``python -m lmboost ARGV`` in a fresh interpreter, stderr captured as text."""
    src = str(Path(lmboost.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "lmboost", *argv], stderr=subprocess.PIPE,
                          text=True, env=env, timeout=120, **kwargs)


def test_piping_into_a_closed_reader_is_quiet():
    """`lmboost tasks | head -1`: the reader goes away before we finish writing."""
    read, write = os.pipe()
    os.close(read)  # the reader is already gone: every write fails with EPIPE
    try:
        done = _lmboost(["tasks"], stdout=write)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141
