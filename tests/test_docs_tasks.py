"""Every example in docs/tasks.md runs: its YAML files load, its commands succeed (the icl
command on the tiny model) and its Python prints a prompt."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import lmboost
from lmboost.cli import main
from lmboost.tasks import get_task

DOC = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"
TEXT = DOC.read_text(encoding="utf-8")
NEWS = {
    "news.jsonl": [{"title": "markets fell as stocks slid", "topic": "biz"},
                   {"title": "the team won the final", "topic": "sport"}],
    "news_train.jsonl": [{"title": "shares rose", "topic": "biz"},
                         {"title": "a late goal", "topic": "sport"}],
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", TEXT, flags=re.S | re.M)


def commands(text: str) -> list[list[str]]:
    """Every ``lmboost ...`` command in ``text`` (continuation lines joined), as argv."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.lstrip("# ").split(";"):
            part = part.strip().split(" — ")[-1].strip()
            if part.startswith("lmboost "):
                found.append(shlex.split(part)[1:])
    return found


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """The doc's files in a fresh working directory."""
    (tmp_path / "reviews.csv").write_text(blocks("csv")[0])
    for name, rows in NEWS.items():
        (tmp_path / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    for block in blocks("yaml"):
        name = re.match(r"# (\S+\.yaml)", block)[1]
        (tmp_path / name).write_text(block)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_doc_has_the_examples_it_promises():
    assert len(blocks("yaml")) == 3 and len(blocks("csv")) == 1 and len(blocks("python")) == 1
    assert len(commands("\n".join(blocks("bash")))) == 2
    for key in ("pool", "pool_size", "label_column", "text_columns", "labels", "seed",
                "instruction", "demo_separator", "description", "name"):
        assert f"| `{key}` |" in TEXT
    for flag in ("--pool", "--pool-size", "--label-column", "--text-columns", "--label-words"):
        assert f"`{flag}" in TEXT


def test_every_yaml_example_loads(data_dir):
    reviews = get_task(str(data_dir / "reviews.yaml"))
    assert reviews.labels == ["0", "1"] and reviews.verbalizer == ["negative", "positive"]
    assert len(reviews.load_eval()) == 4 and len(reviews.load_pool()) == 2
    topics = get_task(str(data_dir / "topics.yaml"))
    assert topics.prompt(topics.load_eval()[0]) == (
        "Classify each article by its topic.\n\nArticle: markets fell as stocks slid\nTopic:"
    )
    assert topics.answer_text(topics.load_eval()[0]) == " Business"
    assert [ex.fields["title"] for ex in topics.load_pool()] == ["shares rose", "a late goal"]
    listed = get_task(str(data_dir / "sentiment-list.yaml"))
    assert listed.verbalizer == ["negative", "positive"] and len(listed.load_pool()) == 2
    assert sorted(ex.label for ex in listed.load_eval() + listed.load_pool()) == [0] * 3 + [1] * 3


def test_every_command_example_runs(data_dir, tiny_model_dir, capsys):
    found = commands(TEXT)
    assert sorted(argv[0] for argv in found) == ["icl", "icl", "tasks", "tasks"]
    for argv in found:
        if argv[0] == "icl":
            argv = [*argv, "--model", tiny_model_dir, "--seeds", "1"]
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        if argv[0] == "tasks":
            assert "\nReview: " in out and "0 -> 'negative', 1 -> 'positive'" in out
    assert (data_dir / "runs" / "reviews" / "report.md").is_file()


def test_python_example_runs(data_dir):
    (code,) = blocks("python")
    src = str(Path(lmboost.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=data_dir, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"Review: .+\nSentiment:\n", done.stdout)
