"""The fault suite (issue 18): bad inputs and faults across every command and the Python API.

Each case is one bad input or one fault. A command must stop with a nonzero exit status and a
one-line ``lmboost: error: ...`` (or argparse's ``lmboost CMD: error: ...``) that names what is
wrong, never a traceback; a Python API call must raise the specific lmboost error. Most cases
fail before any model loads, which is itself what they check: the model loaders are replaced by
one that fails the test, except in the cases marked ``model``.

Placeholders in a case's argv: ``@name`` is the file ``name`` of the fixture folder (see
:func:`fx`), ``$M`` the tiny model folder, ``$OUT`` a fresh output folder, ``$AFILE`` a plain file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lmboost.cli import main
from lmboost.config import data_dir
from lmboost.errors import (
    CacheError,
    DataNotFoundError,
    FileEncodingError,
    LmboostError,
    ModelLoadError,
    ModelNotFoundError,
    ScoringError,
    TaskError,
)

ROOT = Path(__file__).resolve().parents[1]
MIXTURE = str(ROOT / "recipes" / "mixture-flan-cot.yaml")
TEMPLATE = ["--template", "{text}", "--label-words", "neg,pos"]


# --------------------------------------------------------------------------- fixtures

FILES: dict[str, bytes | str] = {
    "good.csv": "text,label\ngood film,1\nbad film,0\ngreat,1\nawful,0\n",
    "good.tsv": "text\tlabel\ngood\t1\nbad\t0\n",
    "empty.csv": "",
    "blank.csv": "\n\n\n",
    "header_only.csv": "text,label\n",
    "extra_col.csv": "text,label\ngood,1,extra\n",
    "short_row.csv": "text,label,topic\ngood,1\n",
    "dup.csv": "text,label,label\ngood,1,1\n",
    "wrongcols.csv": "review,y\ngood,1\n",
    "headerless.csv": "good,1\nbad,0\n",
    "latin1.csv": b"text,label\ncaf\xe9,1\n",
    "latin1.tsv": b"text\tlabel\nna\xefve\t1\n",
    "utf16.csv": "text,label\ngood,1\n".encode("utf-16"),
    "badquote.csv": 'text,label\n"unterminated,1\nbad,0\n',
    "unknown_label.csv": "text,label\ngood,1\nbad,2\n",
    "empty_label.csv": "text,label\ngood,\nbad,0\n",
    "bad.jsonl": '{"text": "a", "label": 1}\n{"text": "b", "label"\n',
    "list.jsonl": "[1, 2]\n",
    "nolabel.jsonl": '{"text": "a"}\n',
    "empty.jsonl": "",
    "latin1.jsonl": b'{"text": "caf\xe9", "label": 1}\n',
    "bad.yaml": "name: [unclosed\n",
    "tab.yaml": "name: x\n\tpath: y\n",
    "empty.yaml": "",
    "list.yaml": "- a\n- b\n",
    "scalar.yaml": "just text\n",
    "latin1.yaml": b"name: caf\xe9\n",
    "unknownkey.yaml": "path: good.csv\ntemplate: '{text}'\nlabel_words: [neg, pos]\nbogus: 1\n",
    "missingkey.yaml": "path: good.csv\nlabel_words: [neg, pos]\n",
    "missingdata.yaml": "path: nofile.csv\ntemplate: '{text}'\nlabel_words: [neg, pos]\n",
    "badtemplate.yaml": "path: good.csv\ntemplate: '{nosuch}'\nlabel_words: [neg, pos]\n",
    "samewords.yaml": "path: good.csv\ntemplate: '{text}'\nlabel_words: [same, same]\n",
    "template_list.yaml": "path: good.csv\ntemplate: ['{text}']\nlabel_words: [neg, pos]\n",
    "path_list.yaml": "path: [good.csv]\ntemplate: '{text}'\nlabel_words: [neg, pos]\n",
    "emptydata.yaml": "path: empty.csv\ntemplate: '{text}'\nlabel_words: [neg, pos]\n",
    "latindata.yaml": "path: latin1.csv\ntemplate: '{text}'\nlabel_words: [neg, pos]\n",
    "badpool.yaml": "path: good.csv\npool: nosuch.csv\ntemplate: '{text}'\n"
                    "label_words: [neg, pos]\n",
    "pool_and_size.yaml": "path: good.csv\npool: good.csv\npool_size: 1\ntemplate: '{text}'\n"
                          "label_words: [neg, pos]\n",
    "poolsize_big.yaml": "path: good.csv\npool_size: 40\ntemplate: '{text}'\n"
                         "label_words: [neg, pos]\n",
    "words_missing.yaml": "path: good.csv\ntemplate: '{text}'\nlabel_words: {'0': neg}\n",
    "prompts.txt": "hello\n",
    "empty.txt": "",
    "blank.txt": "\n  \n\n",
    "latin1.txt": b"caf\xe9 au lait\n",
    "bad_prompts.jsonl": '{"prompt": 1}\n{"x": 2}\n',
    "prompts_list.jsonl": '["hello"]\n',
    "prompts_bad.jsonl": '{"prompt": "a"\n',
    "notalog.jsonl": "x",
    "seat_list.jsonl": "[1, 2]\n",
    "seat_keys.jsonl": '{"targ1": {"category": "a", "examples": ["x"]}}\n',
    # recipes
    "r_bad.yaml": "recipe: [\n",
    "r_badtype.yaml": "recipe: classify\nlearning_rate: fast\n",
    "r_unknown.yaml": "recipe: classify\nbogus_key: 1\n",
    "r_lm.yaml": "recipe: lm\n",
    "r_lora.yaml": "lora: 3\n",
    "r_loradrop.yaml": "recipe: classify\ntask: sst2\nlora: {enabled: true, dropout: 1.5}\n",
    "r_steps.yaml": "recipe: classify\ntask: sst2\nmax_steps: 0\n",
    "r_lr.yaml": "recipe: classify\ntask: sst2\nlearning_rate: -1\n",
    "r_adv.yaml": "recipe: classify\ntask: sst2\nadversarial: {method: bogus}\n",
    "r_advparam.yaml": "recipe: classify\ntask: sst2\nadversarial: {method: fgm, bogus: 1}\n",
    "r_both.yaml": "recipe: classify\ntask: sst2\ndata: good.csv\n",
    "r_bool.yaml": "recipe: classify\ntask: sst2\nlora: {enabled: maybe}\n",
    "r_cw.yaml": "recipe: lm\ntask: sst2\nclass_weights: [1, 2]\n",
    # mixtures
    "m_badtype.yaml": "sources: [sst2]\nsize: many\n",
    "m_unknown.yaml": "sources: [nosuch]\n",
    "m_group.yaml": "sources: [sst2]\nheld_out: [nosuchgroup]\n",
    "m_twice.yaml": "sources: [sst2, sst2]\n",
    "m_nosources.yaml": "size: 10\n",
    "m_rate.yaml": "sources: [sst2]\nrates: {sst2: 2}\nsize: 10\n",
    "m_frac.yaml": "sources: [sst2]\nfew_shot_fraction: 1.5\n",
    "m_key.yaml": "sources: [sst2]\nbogus: 1\n",
    "m_srcstr.yaml": "sources: 3\n",
    "m_caps.yaml": "sources: [sst2]\ncaps: {sst2: lots}\n",
    "m_rates_sum.yaml": "sources: [sst2, trec]\nrates: {sst2: 0.7, trec: 0.6}\nsize: 9\n",
    "m_seed.yaml": "sources: [sst2]\nseed: abc\n",
    "m_k.yaml": "sources: [sst2]\nfew_shot_k: -1\n",
    "m_heldstr.yaml": "sources: [sst2]\nheld_out: 5\n",
    "m_allheld.yaml": "sources: [sst2]\nheld_out: [sentiment]\n",
    "m_ok.yaml": "sources: [sst2]\nsize: 3\n",
    # serve configs
    "s_notasks.yaml": "tasks: []\n",
    "s_tasksmap.yaml": "tasks: {task: sst2}\n",
    "s_port.yaml": "tasks: [{task: sst2}]\nport: 99999\n",
    "s_porttext.yaml": "tasks: [{task: sst2}]\nport: http\n",
    "s_cal.yaml": "tasks: [{task: sst2, calibrator: bogus}]\n",
    "s_shots.yaml": "tasks: [{task: sst2, shots: many}]\n",
    "s_key.yaml": "tasks: [{task: sst2}]\nbogus: 1\n",
    "s_taskkey.yaml": "tasks: [{task: sst2, bogus: 1}]\n",
    "s_twice.yaml": "tasks: [{task: sst2}, {task: sst2}]\n",
    "s_notask.yaml": "tasks: [{shots: 4}]\n",
    "s_unktask.yaml": "tasks: [{task: nosuchtask}]\n",
    "s_warm.yaml": "tasks: [{task: sst2, warm_start: -1}]\n",
    "s_momentum.yaml": "tasks: [{task: sst2, momentum: 1.5}]\n",
    "s_bcl.yaml": "tasks: [{task: sst2, calibrator: bcl, labelled: 1}]\n",
    "s_backend.yaml": "tasks: [{task: sst2}]\nbackend: tgi\n",
    "s_chat.yaml": "tasks: [{task: sst2}]\nchat: maybe\n",
    "s_wait.yaml": "tasks: [{task: sst2}]\nbatch_wait_ms: -1\n",
    "s_maxbatch.yaml": "tasks: [{task: sst2}]\nmax_batch: 0\n",
    "s_bool.yaml": "tasks: [{task: sst2}]\ntrust_remote_code: maybe\n",
    "s_entry.yaml": "tasks: [3]\n",
}


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Path:
    """The fixture folder: every file of FILES, an empty folder and a plain file."""
    folder = tmp_path_factory.mktemp("fault-inputs")
    for name, content in FILES.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (folder / "emptydir").mkdir()
    (folder / "afile").write_text("not a folder")
    return folder


class ModelWouldLoad(AssertionError):
    """Raised by the stand-in model loaders: this case must fail before any model loads."""


def _no_model(*args, **kwargs):
    raise ModelWouldLoad("a model was loaded, but this case must fail before that")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network: a hub id that is not cached fails at once, the same on every machine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _data_found(monkeypatch):
    """The cases run in a temporary folder, from which the ``shared/data`` beside the checkout
    cannot be found: name it in LMBOOST_DATA (when it is unset) as seen from the checkout."""
    if os.environ.get("LMBOOST_DATA"):
        return
    with contextlib.chdir(ROOT), contextlib.suppress(DataNotFoundError):
        monkeypatch.setenv("LMBOOST_DATA", str(data_dir()))


@pytest.fixture
def no_model(monkeypatch):
    for target in (
        "lmboost.evaluation.store.load_backend",
        "lmboost.bias.runner.load_model",
        "lmboost.compression.runner.load_model",
        "lmboost.cli.generate_cmd.load_backend",
        "lmboost.backends.load_backend",
        "lmboost.training.trainer.resolve_model",
    ):
        monkeypatch.setattr(target, _no_model, raising=False)


def _expand(argv: list[str], fx: Path, model: str, out: Path) -> list[str]:
    def one(arg: str) -> str:
        if arg.startswith("@"):
            return str(fx / arg[1:])
        return {"$M": model, "$OUT": str(out), "$AFILE": str(fx / "afile")}.get(arg, arg)

    return [one(a) for a in argv]


def fails(argv: list[str], message: str, capsys, code: int = 2) -> str:
    """Run the CLI in-process; assert exit ``code``, ``message`` on one stderr line and no
    traceback; return stderr."""
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse
        rc = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == code, (rc, err)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert lines, f"no error line in {err!r}"
    assert lines[0].startswith("lmboost"), err
    assert message in err, err
    assert any(message in line for line in err.splitlines()), f"{message!r} spans lines: {err!r}"
    return err


def case(id_: str, argv: str | list[str], message: str, *, model: bool = False,
         xfail: str | None = None, code: int = 2):
    args = argv.split() if isinstance(argv, str) else argv
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(args, message, model, code, id=id_, marks=marks)


# --------------------------------------------------------------------------- CLI cases

TASKS = [
    case("tasks-unknown-name", "tasks sst3x", "Unknown task 'sst3x'"),
    case("tasks-unknown-name-close", "tasks agnew", "Did you mean agnews"),
    case("tasks-empty-name", ["tasks", ""], "Unknown task ''"),
    case("tasks-yaml-missing", "tasks @nosuch.yaml", "does not exist"),
    case("tasks-yaml-malformed", "tasks @bad.yaml", "bad.yaml, line 2, column 1: not valid YAML"),
    case("tasks-yaml-tab", "tasks @tab.yaml",
         "tab.yaml, line 2, column 1: not valid YAML: found character '\\t'"),
    case("tasks-yaml-empty", "tasks @empty.yaml",
         "empty.yaml: missing required key(s): path (the data file), template"),
    case("tasks-yaml-list", "tasks @list.yaml",
         "must hold a mapping of settings (`key: value` lines), not a list"),
    case("tasks-yaml-scalar", "tasks @scalar.yaml",
         "must hold a mapping of settings (`key: value` lines), not the text 'just text'"),
    case("tasks-yaml-not-utf8", "tasks @latin1.yaml",
         "latin1.yaml, line 1: the file is not UTF-8 (byte 0xe9)"),
    case("tasks-yaml-unknown-key", "tasks @unknownkey.yaml",
         "unknownkey.yaml: unknown key 'bogus'. Allowed keys: path, template"),
    case("tasks-yaml-missing-key", "tasks @missingkey.yaml",
         "missingkey.yaml: missing required key(s): template (str.format template"),
    case("tasks-yaml-missing-data", "tasks @missingdata.yaml", "nofile.csv does not exist"),
    case("tasks-yaml-template-field", "tasks @badtemplate.yaml", "missing field(s) ['nosuch']"),
    case("tasks-yaml-same-words", "tasks @samewords.yaml", "same label word 'same'"),
    case("tasks-yaml-template-list", "tasks @template_list.yaml",
         "template must be text, not ['{text}']"),
    case("tasks-yaml-path-list", "tasks @path_list.yaml", "path must be text, not ['good.csv']"),
    case("tasks-yaml-empty-data", "tasks @emptydata.yaml", "empty.csv is empty"),
    case("tasks-yaml-latin-data", "tasks @latindata.yaml",
         "latin1.csv, line 2: the file is not UTF-8"),
    case("tasks-yaml-missing-pool", "tasks @badpool.yaml", "nosuch.csv does not exist"),
    case("tasks-yaml-pool-and-size", "tasks @pool_and_size.yaml", "not both"),
    case("tasks-yaml-pool-size-big", "tasks @poolsize_big.yaml", "pool_size"),
    case("tasks-yaml-words-missing", "tasks @words_missing.yaml",
         "label '1' is not in the label set ['0']"),
    case("tasks-csv-empty", ["tasks", "@empty.csv", *TEMPLATE], "empty.csv is empty"),
    case("tasks-csv-blank-lines", ["tasks", "@blank.csv", *TEMPLATE], "blank.csv"),
    case("tasks-csv-header-only", ["tasks", "@header_only.csv", *TEMPLATE], "holds no examples"),
    case("tasks-csv-extra-column", ["tasks", "@extra_col.csv", *TEMPLATE],
         "line 2: expected 2 columns (text, label), found 3"),
    case("tasks-csv-short-row", ["tasks", "@short_row.csv", *TEMPLATE], "short_row.csv, line 2"),
    case("tasks-csv-duplicate-label-column", ["tasks", "@dup.csv", *TEMPLATE],
         "['label'] more than once"),
    case("tasks-csv-wrong-columns", ["tasks", "@wrongcols.csv", *TEMPLATE],
         "missing label column 'label'"),
    case("tasks-csv-headerless", ["tasks", "@headerless.csv", *TEMPLATE],
         "seems to have no header row"),
    case("tasks-csv-not-utf8", ["tasks", "@latin1.csv", *TEMPLATE],
         "line 2: the file is not UTF-8"),
    case("tasks-tsv-not-utf8", ["tasks", "@latin1.tsv", *TEMPLATE],
         "line 2: the file is not UTF-8"),
    case("tasks-csv-utf16", ["tasks", "@utf16.csv", *TEMPLATE], "not UTF-8"),
    case("tasks-csv-bad-quote", ["tasks", "@badquote.csv", *TEMPLATE], "cannot parse row"),
    case("tasks-csv-unknown-label", ["tasks", "@unknown_label.csv", *TEMPLATE],
         "label '2' is not in the label set"),
    case("tasks-csv-empty-label", ["tasks", "@empty_label.csv", *TEMPLATE],
         "empty_label.csv, line 2"),
    case("tasks-jsonl-malformed", ["tasks", "@bad.jsonl", *TEMPLATE], "line 2: not valid JSON"),
    case("tasks-jsonl-list", ["tasks", "@list.jsonl", *TEMPLATE],
         "expected a JSON object per line"),
    case("tasks-jsonl-no-label", ["tasks", "@nolabel.jsonl", *TEMPLATE], "missing label column"),
    case("tasks-jsonl-empty", ["tasks", "@empty.jsonl", *TEMPLATE], "empty.jsonl"),
    case("tasks-jsonl-not-utf8", ["tasks", "@latin1.jsonl", *TEMPLATE], "not UTF-8"),
    case("tasks-template-unknown-field",
         ["tasks", "@good.csv", "--template", "{nosuch}", "--label-words", "neg,pos"],
         "missing field(s) ['nosuch']"),
    case("tasks-template-bad-brace",
         ["tasks", "@good.csv", "--template", "{text", "--label-words", "neg,pos"], "template"),
    case("tasks-no-label-words", ["tasks", "@good.csv", "--template", "{text}"],
         "also give --template"),
    case("tasks-empty-template", ["tasks", "@good.csv", "--template", "", "--label-words", "a,b"],
         "also give --template"),
    case("tasks-label-words-empty-item",
         ["tasks", "@good.csv", "--template", "{text}", "--label-words", "neg,,pos"],
         "--label-words expects a comma-separated list without empty items"),
    case("tasks-label-words-mixed",
         ["tasks", "@good.csv", "--template", "{text}", "--label-words", "0=neg,pos"],
         "give either all value=word pairs or only words"),
    case("tasks-label-words-too-few",
         ["tasks", "@good.csv", "--template", "{text}", "--label-words", "neg"],
         "label '1' is not in the label set ['0']"),
    case("tasks-label-words-same-by-value",
         ["tasks", "@good.csv", "--template", "{text}", "--label-words", "0=neg,1=neg"],
         "same label word 'neg'"),
    case("tasks-pool-size-zero", ["tasks", "@good.csv", *TEMPLATE, "--pool-size", "0"],
         "--pool-size 0 must be between 1 and 3"),
    case("tasks-pool-size-negative", ["tasks", "@good.csv", *TEMPLATE, "--pool-size", "-1"],
         "--pool-size -1 must be between 1 and 3"),
    case("tasks-pool-size-text", ["tasks", "@good.csv", *TEMPLATE, "--pool-size", "x"],
         "argument --pool-size: invalid int value"),
    case("tasks-pool-missing", ["tasks", "@good.csv", *TEMPLATE, "--pool", "@nosuch.csv"],
         "nosuch.csv does not exist"),
    case("tasks-text-columns-exclude-template",
         ["tasks", "@good.csv", *TEMPLATE, "--text-columns", "label"], "not in --text-columns"),
    case("tasks-text-columns-empty", ["tasks", "@good.csv", *TEMPLATE, "--text-columns", ","],
         "--text-columns expects a comma-separated list"),
    case("tasks-data-file-missing", ["tasks", "@nosuch.csv", *TEMPLATE], "does not exist"),
    case("tasks-flags-with-txt", ["tasks", "@prompts.txt", *TEMPLATE],
         "describe(s) a data file, but"),
    case("tasks-flags-with-folder", ["tasks", "@emptydir", *TEMPLATE],
         "describe(s) a data file, but"),
    case("tasks-twice", ["tasks", "sst2", "--task", "agnews"], "Give the task once"),
]

ICL = [
    case("icl-unknown-task", "icl --task nosuch --model $M --out $OUT", "Unknown task 'nosuch'"),
    case("icl-unknown-model", "icl --task sst2 --model nosuch-model --out $OUT",
         "Cannot load 'nosuch-model'", model=True),
    case("icl-model-path-missing", "icl --task sst2 --model ./no/such/dir --out $OUT",
         "No such file or directory: ./no/such/dir", model=True),
    case("icl-model-empty-folder", "icl --task sst2 --model @emptydir --out $OUT",
         "holds no config.json", model=True),
    case("icl-model-is-a-csv", "icl --task sst2 --model @good.csv --out $OUT",
         "is a file, not a model", model=True),
    case("icl-model-gguf-missing", "icl --task sst2 --model @x.gguf --out $OUT",
         "GGUF file not found", model=True),
    case("icl-shots-text", "icl --task sst2 --model $M --shots a,b --out $OUT",
         "--shots expects comma-separated integers"),
    case("icl-shots-float", "icl --task sst2 --model $M --shots 0.5 --out $OUT",
         "--shots expects comma-separated integers"),
    case("icl-shots-negative", "icl --task sst2 --model $M --shots -1 --out $OUT",
         "shots must be non-negative integers, got -1"),
    case("icl-shots-twice", "icl --task sst2 --model $M --shots 0,0 --out $OUT",
         "lists a number twice"),
    case("icl-shots-empty", ["icl", "--task", "sst2", "--model", "$M", "--shots", "", "--out",
                             "$OUT"], "--shots expects a comma-separated list"),
    case("icl-shots-huge", "icl --task sst2 --model $M --shots 100000 --out $OUT",
         "the pool holds"),
    case("icl-seeds-zero", "icl --task sst2 --model $M --seeds 0 --out $OUT",
         "seeds must be an integer >= 1, not 0"),
    case("icl-seeds-text", "icl --task sst2 --model $M --seeds x --out $OUT",
         "argument --seeds: invalid int value"),
    case("icl-unknown-calibration", "icl --task sst2 --model $M --calibration bogus --out $OUT",
         "Unknown calibration method(s) 'bogus'"),
    case("icl-calibration-twice", "icl --task sst2 --model $M --calibration bc,BC --out $OUT",
         "lists a method twice"),
    case("icl-calibration-empty-item",
         "icl --task sst2 --model $M --calibration none,,bc --out $OUT",
         "--calibration expects a comma-separated list without empty items"),
    case("icl-limit-zero", "icl --task sst2 --model $M --limit 0 --out $OUT",
         "limit must be a positive integer"),
    case("icl-limit-negative", "icl --task sst2 --model $M --limit -5 --out $OUT",
         "limit must be a positive integer"),
    case("icl-batch-size-zero", "icl --task sst2 --model $M --batch-size 0 --out $OUT",
         "batch_size must be an integer >= 1"),
    case("icl-labelled-size-negative", "icl --task sst2 --model $M --labelled-size -1 --out $OUT",
         "labelled_size must be an integer >= 0"),
    case("icl-n-domain-zero", "icl --task sst2 --model $M --n-domain 0 --out $OUT",
         "n_domain must be an integer >= 1"),
    case("icl-n-gc-zero", "icl --task sst2 --model $M --n-gc 0 --out $OUT",
         "n_gc must be an integer >= 1"),
    case("icl-tp-zero", "icl --task sst2 --model $M --tensor-parallel-size 0 --out $OUT",
         "tensor_parallel_size must be an integer >= 1"),
    case("icl-unknown-dtype", "icl --task sst2 --model $M --dtype float8 --out $OUT",
         "argument --dtype: invalid choice: 'float8'"),
    case("icl-unknown-backend", "icl --task sst2 --model $M --backend tgi --out $OUT",
         "argument --backend: invalid choice: 'tgi'"),
    case("icl-unknown-demos", "icl --task sst2 --model $M --demos best --out $OUT",
         "argument --demos: invalid choice"),
    case("icl-unknown-truncation", "icl --task sst2 --model $M --truncation right --out $OUT",
         "argument --truncation: invalid choice"),
    case("icl-no-out", "icl --task sst2 --model $M", "the following arguments are required: --out"),
    case("icl-out-is-file", "icl --task sst2 --model $M --out $AFILE", "is a file, not a folder"),
    case("icl-out-under-file", "icl --task sst2 --model $M --out @afile/run",
         "a part of it is a file"),
    case("icl-data-file-no-pool",
         ["icl", "--task", "@good.csv", "--model", "$M", *TEMPLATE, "--shots", "1", "--out",
          "$OUT"], "has no demonstration pool"),
    case("icl-data-file-pool-size-big",
         ["icl", "--task", "@good.csv", "--model", "$M", *TEMPLATE, "--pool-size", "9", "--out",
          "$OUT"], "--pool-size 9 must be between 1 and 3"),
    case("icl-data-file-not-utf8",
         ["icl", "--task", "@latin1.csv", "--model", "$M", *TEMPLATE, "--out", "$OUT"],
         "not UTF-8"),
    case("icl-data-file-headerless",
         ["icl", "--task", "@headerless.csv", "--model", "$M", *TEMPLATE, "--out", "$OUT"],
         "no header row"),
    case("icl-task-yaml-malformed", "icl --task @bad.yaml --model $M --out $OUT",
         "bad.yaml, line 2, column 1: not valid YAML"),
    case("icl-task-yaml-same-words", "icl --task @samewords.yaml --model $M --out $OUT",
         "same label word"),
    case("icl-template-without-data-file",
         "icl --task sst2 --model $M --template {text} --out $OUT", "--template describe(s)"),
]

CALIBRATE = [
    case("calibrate-missing-source", "calibrate @nosuchdir", "does not exist"),
    case("calibrate-log-without-out", "calibrate @emptydir", "give --out DIR"),
    case("calibrate-empty-folder", "calibrate @emptydir --out $OUT",
         "holds no lm-evaluation-harness samples_*.jsonl"),
    case("calibrate-not-json", "calibrate @notalog.jsonl --out $OUT", "line 1: not valid JSON"),
    case("calibrate-csv-as-log", "calibrate @good.csv --out $OUT", "not valid JSON"),
    case("calibrate-empty-log", "calibrate @empty.jsonl --out $OUT", "empty.jsonl"),
    case("calibrate-list-log", "calibrate @list.jsonl --out $OUT", "list.jsonl, line 1"),
    case("calibrate-log-not-utf8", "calibrate @latin1.jsonl --out $OUT", "not UTF-8"),
    case("calibrate-empty-method-list", ["calibrate", "@emptydir", "--calibration", ""],
         "--calibration expects a comma-separated list"),
    case("calibrate-labelled-missing",
         "calibrate @notalog.jsonl --out $OUT --labelled @nosuch.jsonl", "notalog.jsonl"),
]

REASON = [
    case("reason-unknown-task", "reason --task nosuch --model $M --out $OUT",
         "Unknown reasoning task 'nosuch'"),
    case("reason-unknown-bbh", "reason --task bbh:nosuch --model $M --out $OUT",
         "Unknown BBH task 'nosuch'"),
    case("reason-unknown-mmlu", "reason --task mmlu:nosuch --model $M --out $OUT",
         "Unknown MMLU subject 'nosuch'"),
    case("reason-unknown-mode", "reason --task gsm8k --mode tot --model $M --out $OUT",
         "argument --mode: invalid choice: 'tot'"),
    case("reason-sc-zero", "reason --task gsm8k --self-consistency 0 --model $M --out $OUT",
         "self_consistency must be at least 1"),
    case("reason-limit-zero", "reason --task gsm8k --limit 0 --model $M --out $OUT",
         "limit must be at least 1"),
    case("reason-max-new-tokens-zero",
         "reason --task gsm8k --max-new-tokens 0 --model $M --out $OUT",
         "max_new_tokens must be at least 1"),
    case("reason-batch-size-zero", "reason --task gsm8k --batch-size 0 --model $M --out $OUT",
         "batch_size must be at least 1"),
    case("reason-temperature-negative",
         "reason --task gsm8k --temperature -1 --self-consistency 3 --model $M --out $OUT",
         "temperature must be > 0 when sampling"),
    case("reason-top-p-range",
         "reason --task gsm8k --top-p 2 --self-consistency 3 --model $M --out $OUT",
         "top_p must be in (0, 1]"),
    case("reason-top-k-negative",
         "reason --task gsm8k --top-k -1 --self-consistency 3 --model $M --out $OUT",
         "top_k must be >= 0"),
    case("reason-temperature-text", "reason --task gsm8k --temperature hot --model $M --out $OUT",
         "argument --temperature: invalid float value"),
    case("reason-unknown-chat", "reason --task gsm8k --chat maybe --model $M --out $OUT",
         "argument --chat: invalid choice"),
    case("reason-unknown-device", "reason --task gsm8k --device tpu --model $M --out $OUT",
         "Unknown device 'tpu'", model=True),
    case("reason-out-is-file", "reason --task gsm8k --model $M --out $AFILE",
         "is a file, not a folder"),
    case("reason-out-under-file", "reason --task gsm8k --model $M --out @afile/x",
         "a part of it is a file"),
    case("reason-unknown-model", "reason --task gsm8k --model nosuch-model --out $OUT",
         "Cannot load 'nosuch-model'", model=True),
    case("reason-tp-zero", "reason --task gsm8k --tensor-parallel-size 0 --model $M --out $OUT",
         "tensor_parallel_size"),
]

GENERATE = [
    case("generate-prompts-missing", "generate --prompts @nosuch.txt --model $M --out $OUT",
         "Prompts file not found"),
    case("generate-prompts-empty", "generate --prompts @empty.txt --model $M --out $OUT",
         "holds no prompts"),
    case("generate-prompts-blank", "generate --prompts @blank.txt --model $M --out $OUT",
         "holds no prompts"),
    case("generate-prompts-jsonl-fields",
         "generate --prompts @bad_prompts.jsonl --model $M --out $OUT",
         'bad_prompts.jsonl, line 1: every line must be a JSON object with a non-empty "prompt" '
         "string"),
    case("generate-prompts-jsonl-list",
         "generate --prompts @prompts_list.jsonl --model $M --out $OUT",
         'prompts_list.jsonl, line 1: every line must be a JSON object with a non-empty "prompt"'),
    case("generate-prompts-jsonl-broken",
         "generate --prompts @prompts_bad.jsonl --model $M --out $OUT",
         "prompts_bad.jsonl, line 1: not valid JSON (Expecting ',' delimiter"),
    case("generate-prompts-not-utf8", "generate --prompts @latin1.txt --model $M --out $OUT",
         "latin1.txt, line 1: the file is not UTF-8 (byte 0xe9)"),
    case("generate-prompts-is-folder", "generate --prompts @emptydir --model $M --out $OUT",
         "Prompts file not found"),
    case("generate-unknown-goal", ["generate", "--prompt", "hi", "--rain", "--goal", "", "--model",
                                   "$M", "--out", "$OUT"], "Unknown goal ''"),
    case("generate-rain-iterations-zero",
         "generate --prompt hi --rain --max-iterations 0 --model $M --out $OUT",
         "max_iterations must be at least 1"),
    case("generate-rain-candidates-zero",
         "generate --prompt hi --rain --candidates 0 --model $M --out $OUT",
         "num_candidates must be at least 1"),
    case("generate-rain-parallel-zero",
         "generate --prompt hi --rain --parallel 0 --model $M --out $OUT",
         "parallel must be at least 1"),
    case("generate-rain-vllm", "generate --prompt hi --rain --backend vllm --model $M --out $OUT",
         "only the hf backend exposes"),
    case("generate-prompt-and-prompts",
         "generate --prompt hi --prompts @prompts.txt --model $M --out $OUT",
         "argument --prompts: not allowed with argument --prompt"),
    case("generate-no-prompt", "generate --model $M --out $OUT",
         "one of the arguments --prompt --prompts --prompt-set is required"),
    case("generate-unknown-dtype", "generate --prompt hi --dtype int3 --model $M --out $OUT",
         "argument --dtype: invalid choice"),
    case("generate-unknown-model", "generate --prompt hi --model nosuch-model --out $OUT",
         "Cannot load 'nosuch-model'", model=True),
]

COMPRESS = [
    case("compress-nothing-to-do", "compress --model $M --out $OUT", "Nothing to do"),
    case("compress-unknown-method", "compress --model $M --prune bogus:0.5 --out $OUT",
         "Unknown pruning method 'bogus'"),
    case("compress-amount-one", "compress --model $M --prune magnitude:1.5 --out $OUT",
         "must be a number in [0, 1)"),
    case("compress-amount-negative", "compress --model $M --prune wanda:-0.1 --out $OUT",
         "must be a number in [0, 1)"),
    case("compress-amount-text", "compress --model $M --prune magnitude:abc --out $OUT",
         "not 'abc'"),
    case("compress-amount-missing", "compress --model $M --prune magnitude --out $OUT",
         "lacks an amount"),
    case("compress-amount-nan", "compress --model $M --prune magnitude:nan --out $OUT",
         "must be a number in [0, 1)"),
    case("compress-unknown-scheme", "compress --model $M --quantize int4 --out $OUT",
         "Unknown quantization 'int4'"),
    case("compress-int8-bf16",
         "compress --model $M --quantize int8-dynamic --dtype bfloat16 --out $OUT",
         "int8-dynamic needs dtype float32"),
    case("compress-unknown-scope",
         "compress --model $M --prune magnitude:0.5 --scope all --out $OUT",
         "argument --scope: invalid choice"),
    case("compress-sweep-unknown", "compress --model $M --sweep bogus:0.1 --out $OUT",
         "Unknown pruning method 'bogus'"),
    case("compress-sweep-no-amounts", "compress --model $M --sweep magnitude --out $OUT",
         "must read METHODS:AMOUNTS"),
    case("compress-sweep-amount-text", "compress --model $M --sweep magnitude:x --out $OUT",
         "not 'x'"),
    case("compress-ppl-tokens-zero",
         "compress --model $M --prune magnitude:0.5 --ppl-tokens 0 --out $OUT",
         "ppl_tokens must be an integer >= 2"),
    case("compress-stride-over-window",
         "compress --model $M --prune magnitude:0.5 --ppl-window 10 --ppl-stride 20 --out $OUT",
         "ppl_stride must not exceed ppl_window"),
    case("compress-calib-samples-zero",
         "compress --model $M --prune wanda:0.5 --calib-samples 0 --out $OUT",
         "calib_samples must be an integer >= 1"),
    case("compress-icl-limit-zero",
         "compress --model $M --prune magnitude:0.5 --icl --icl-limit 0 --out $OUT",
         "icl_limit must be a positive integer"),
    case("compress-out-is-file", "compress --model $M --prune magnitude:0.5 --out $AFILE",
         "is a file, not a folder"),
    case("compress-unknown-model", "compress --model nosuch-model --prune magnitude:0.5 --out $OUT",
         "Cannot load 'nosuch-model'", model=True),
    case("compress-unknown-device", "compress --model $M --prune magnitude:0.5 --device tpu "
         "--out $OUT", "Unknown device 'tpu'", model=True),
    case("compress-ppl-text-missing",
         "compress --model $M --prune magnitude:0.5 --ppl-window 64 --ppl-stride 32 "
         "--ppl-text @nosuch.txt --out $OUT", "nosuch.txt does not exist", model=True),
    case("compress-ppl-text-not-utf8",
         "compress --model $M --prune magnitude:0.5 --ppl-window 64 --ppl-stride 32 "
         "--ppl-text @latin1.txt --out $OUT", "not UTF-8", model=True),
    case("compress-ppl-text-empty",
         "compress --model $M --prune magnitude:0.5 --ppl-window 64 --ppl-stride 32 "
         "--ppl-text @empty.txt --out $OUT", "at least 2 tokens", model=True),
    case("compress-calib-text-missing",
         "compress --model $M --prune wanda:0.5 --ppl-window 64 --ppl-stride 32 --calib-len 16 "
         "--calib-text @nosuch.txt --out $OUT", "nosuch.txt does not exist", model=True),
    case("compress-window-over-context", "compress --model $M --prune magnitude:0.5 --out $OUT",
         "--ppl-window 512 is cut to the model's context length of 128", model=True),
]

BIAS = [
    case("bias-unknown-test", "bias --model $M --tests nosuch --out $OUT",
         "Unknown SEAT test 'nosuch'"),
    case("bias-empty-tests", ["bias", "--model", "$M", "--tests", "", "--out", "$OUT"],
         "tests expects a comma-separated list"),
    case("bias-empty-test-item", "bias --model $M --tests weat1,,weat2 --out $OUT",
         "tests expects a comma-separated list"),
    case("bias-test-file-missing", "bias --model $M --tests @nosuch.jsonl --out $OUT",
         "SEAT test file not found"),
    case("bias-test-file-malformed", "bias --model $M --tests @bad.jsonl --out $OUT",
         "not valid JSON"),
    case("bias-test-file-list", "bias --model $M --tests @seat_list.jsonl --out $OUT",
         "expected one JSON object"),
    case("bias-test-file-keys", "bias --model $M --tests @seat_keys.jsonl --out $OUT",
         "seat_keys.jsonl"),
    case("bias-test-file-not-utf8", "bias --model $M --tests @latin1.jsonl --out $OUT",
         "not UTF-8"),
    case("bias-permutations-zero", "bias --model $M --tests weat1 --permutations 0 --out $OUT",
         "permutations must be an integer >= 1"),
    case("bias-batch-size-zero", "bias --model $M --tests weat1 --batch-size 0 --out $OUT",
         "batch_size must be an integer >= 1"),
    case("bias-unknown-pooling", "bias --model $M --tests weat1 --pooling cls --out $OUT",
         "argument --pooling: invalid choice: 'cls'"),
    case("bias-out-is-file", "bias --model $M --tests weat1 --out $AFILE",
         "is a file, not a folder"),
    case("bias-unknown-model", "bias --model nosuch-model --tests weat1 --out $OUT",
         "Cannot load 'nosuch-model'", model=True),
]

TEMPLATE_SET = ["--set", "labels=0,1", "--set", 'template="{text}"']

TRAIN = [
    case("train-data-without-labels", "train classify --model $M --data @good.csv --out $OUT",
         "labels is required with a classify data file"),
    case("train-recipe-missing", "train classify --recipe @nosuch.yaml --out $OUT",
         "does not exist"),
    case("train-recipe-malformed", "train classify --recipe @r_bad.yaml --out $OUT",
         "r_bad.yaml, line 2, column 1: not valid YAML"),
    case("train-recipe-list", "train classify --recipe @list.yaml --out $OUT",
         "list.yaml must hold a mapping of settings (`key: value` lines), not a list"),
    case("train-recipe-not-utf8", "train classify --recipe @latin1.yaml --out $OUT",
         "latin1.yaml, line 1: the file is not UTF-8 (byte 0xe9)"),
    case("train-recipe-wrong-type", "train classify --recipe @r_badtype.yaml --out $OUT",
         "r_badtype.yaml: learning_rate must be a number, not 'fast'"),
    case("train-recipe-unknown-key", "train classify --recipe @r_unknown.yaml --out $OUT",
         "r_unknown.yaml: unknown key 'bogus_key'. Allowed keys: recipe, out"),
    case("train-recipe-other-kind", "train classify --recipe @r_lm.yaml --out $OUT",
         "is a lm recipe, but the command is `lmboost train classify`"),
    case("train-recipe-lora-scalar", "train classify --recipe @r_lora.yaml --out $OUT",
         "lora must be a mapping of settings"),
    case("train-recipe-lora-dropout", "train classify --recipe @r_loradrop.yaml --out $OUT",
         "lora.dropout must be in [0, 1)"),
    case("train-recipe-max-steps-zero", "train classify --recipe @r_steps.yaml --out $OUT",
         "max_steps must be -1"),
    case("train-recipe-lr-negative", "train classify --recipe @r_lr.yaml --out $OUT",
         "learning_rate"),
    case("train-recipe-adversarial-unknown", "train classify --recipe @r_adv.yaml --out $OUT",
         "bogus"),
    case("train-recipe-adversarial-param", "train classify --recipe @r_advparam.yaml --out $OUT",
         "bogus"),
    case("train-recipe-task-and-data", "train classify --recipe @r_both.yaml --out $OUT",
         "give exactly one of task"),
    case("train-recipe-bool", "train classify --recipe @r_bool.yaml --out $OUT",
         "lora.enabled must be true or false, not 'maybe'"),
    case("train-class-weights-lm", "train lm --recipe @r_cw.yaml --out $OUT",
         "class_weights applies to recipe classify only"),
    case("train-set-no-equals", "train classify --set foo --out $OUT", "--set expects KEY=VALUE"),
    case("train-set-unknown-key", "train classify --set nosuchkey=1 --out $OUT",
         "command line: unknown key 'nosuchkey'. Allowed keys: recipe, out"),
    case("train-set-wrong-type", "train classify --set learning_rate=abc --out $OUT",
         "command line: learning_rate must be a number, not 'abc'"),
    case("train-set-lora-wrong-type", "train classify --set lora.r=abc --out $OUT",
         "command line: lora.r must be a whole number, not 'abc'"),
    case("train-set-value-and-section", "train classify --set lora=1 --set lora.r=2 --out $OUT",
         "lora"),
    case("train-max-steps-zero", "train classify --task sst2 --max-steps 0 --out $OUT",
         "max_steps must be -1"),
    case("train-unknown-recipe", "train dpo --out $OUT", "argument recipe: invalid choice: 'dpo'"),
    case("train-unknown-adversarial", "train classify --adversarial bogus --out $OUT",
         "argument --adversarial: invalid choice"),
    case("train-unknown-task", "train classify --task nosuchtask --model $M --out $OUT",
         "Unknown task 'nosuchtask'", model=True),
    case("train-data-missing", ["train", "classify", "--data", "@nosuch.csv", "--model", "$M",
                                *TEMPLATE_SET, "--out", "$OUT"], "nosuch.csv", model=True),
    case("train-data-not-utf8", ["train", "classify", "--data", "@latin1.csv", "--model", "$M",
                                 *TEMPLATE_SET, "--out", "$OUT"], "not UTF-8", model=True),
    case("train-data-empty", ["train", "classify", "--data", "@empty.csv", "--model", "$M",
                              *TEMPLATE_SET, "--out", "$OUT"], "empty.csv is empty", model=True),
    case("train-data-dup-columns", ["train", "classify", "--data", "@dup.csv", "--model", "$M",
                                    *TEMPLATE_SET, "--out", "$OUT"], "more than once", model=True),
    case("train-data-headerless", ["train", "classify", "--data", "@headerless.csv", "--model",
                                   "$M", *TEMPLATE_SET, "--out", "$OUT"],
                                   "no header row", model=True),
    case("train-lm-corpus-missing", "train lm --data @nosuch.txt --model $M --out $OUT",
         "Corpus file", model=True),
    case("train-lm-corpus-not-utf8", "train lm --data @latin1.txt --model $M --out $OUT",
         "line 1: the file is not UTF-8", model=True),
    case("train-lm-corpus-empty", "train lm --data @empty.txt --model $M --out $OUT",
         "empty.txt holds no text", model=True),
    case("train-sft-malformed", "train sft --data @bad.jsonl --model $M --out $OUT",
         "bad.jsonl, line", model=True),
    case("train-sft-missing-fields", "train sft --data @nolabel.jsonl --model $M --out $OUT",
         "missing field(s) ['prompt', 'completion']", model=True),
    case("train-out-is-file", ["train", "classify", "--model", "$M", "--data", "@good.csv",
                               *TEMPLATE_SET, "--out", "$AFILE"], "is a file, not a folder"),
]

INSTRUCT = [
    case("instruct-config-missing", "instruct build --config @nosuch.yaml --out $OUT",
         "does not exist"),
    case("instruct-config-malformed", "instruct build --config @bad.yaml --out $OUT",
         "bad.yaml, line 2, column 1: not valid YAML"),
    case("instruct-config-empty", "instruct build --config @empty.yaml --out $OUT",
         "empty.yaml: missing required key(s): sources (the list of source names to mix)"),
    case("instruct-config-list", "instruct build --config @list.yaml --out $OUT", "list.yaml"),
    case("instruct-config-not-utf8", "instruct build --config @latin1.csv --out $OUT",
         "latin1.csv, line 2: the file is not UTF-8 (byte 0xe9)"),
    case("instruct-wrong-type", "instruct build --config @m_badtype.yaml --out $OUT",
         "m_badtype.yaml: size must be a whole number or null, not 'many'"),
    case("instruct-unknown-source", "instruct build --config @m_unknown.yaml --out $OUT",
         "Unknown source 'nosuch'"),
    case("instruct-unknown-group", "instruct build --config @m_group.yaml --out $OUT",
         "Unknown held-out group 'nosuchgroup'"),
    case("instruct-source-twice", "instruct build --config @m_twice.yaml --out $OUT",
         "sources lists sst2 more than once"),
    case("instruct-no-sources", "instruct build --config @m_nosources.yaml --out $OUT",
         "m_nosources.yaml: missing required key(s): sources"),
    case("instruct-sources-scalar", "instruct build --config @m_srcstr.yaml --out $OUT",
         "sources"),
    case("instruct-rate-range", "instruct build --config @m_rate.yaml --out $OUT",
         "rates.sst2 must be a fraction in [0, 1]"),
    case("instruct-rates-sum", "instruct build --config @m_rates_sum.yaml --out $OUT",
         "rates sum to 1.3"),
    case("instruct-fraction-range", "instruct build --config @m_frac.yaml --out $OUT",
         "few_shot_fraction must be a number in [0, 1]"),
    case("instruct-unknown-key", "instruct build --config @m_key.yaml --out $OUT",
         "unknown key 'bogus'"),
    case("instruct-caps-text", "instruct build --config @m_caps.yaml --out $OUT", "caps"),
    case("instruct-seed-text", "instruct build --config @m_seed.yaml --out $OUT", "seed"),
    case("instruct-k-negative", "instruct build --config @m_k.yaml --out $OUT", "few_shot_k"),
    case("instruct-held-out-scalar", "instruct build --config @m_heldstr.yaml --out $OUT",
         "m_heldstr.yaml: held_out must be a list of texts, not 5"),
    case("instruct-everything-held-out", "instruct build --config @m_allheld.yaml --out $OUT",
         "removes every source"),
    case("instruct-cap-text", f"instruct build --config {MIXTURE} --cap abc --out $OUT",
         "--cap expects N or SOURCE=N"),
    case("instruct-cap-zero", f"instruct build --config {MIXTURE} --cap 0 --out $OUT",
         "cap must be a whole number >= 1"),
    case("instruct-cap-unknown-source", f"instruct build --config {MIXTURE} --cap nosuch=3 "
         "--out $OUT", "caps names 'nosuch', which is not in sources"),
    case("instruct-size-negative", f"instruct build --config {MIXTURE} --size -5 --out $OUT",
         "size must be a whole number >= 1"),
    case("instruct-held-out-unknown", f"instruct build --config {MIXTURE} --held-out nosuch "
         "--out $OUT", "Unknown held-out group 'nosuch'"),
    case("instruct-out-is-file", "instruct build --config @m_ok.yaml --out $AFILE",
         "is a file, not a folder"),
    case("instruct-out-under-file", "instruct build --config @m_ok.yaml --out @afile/mix",
         "a part of it is a file"),
    case("instruct-unknown-action", "instruct bogus", "argument ACTION: invalid choice: 'bogus'"),
    case("instruct-no-config", "instruct build --out $OUT",
         "the following arguments are required: --config"),
]

MODELS = [
    case("models-info-unknown", "models info nosuch-model", "Cannot load 'nosuch-model'",
         model=True),
    case("models-info-hub-id-offline", "models info someone/not-cached",
         "Cannot load 'someone/not-cached'", model=True),
    case("models-info-csv", "models info @good.csv", "is a file, not a model", model=True),
    case("models-info-empty-folder", "models info @emptydir", "holds no config.json", model=True),
    case("models-info-gguf-missing", "models info @x.gguf", "GGUF file not found", model=True),
    case("models-pull-unknown-alias", "models pull nosuch-alias",
         "Unknown model alias 'nosuch-alias'", model=True),
    case("models-pull-gguf-missing", "models pull @nosuch.gguf", "GGUF file not found",
         model=True),
    case("models-unknown-action", "models bogus", "argument ACTION: invalid choice: 'bogus'"),
    case("models-no-action", "models", "the following arguments are required: ACTION"),
]

DEMO = [
    case("demo-unknown-model", "demo --model nosuch-model --out $OUT",
         "Cannot load 'nosuch-model'", model=True),
    case("demo-shots-negative", "demo --model $M --shots -1 --out $OUT",
         "shots must be non-negative integers"),
    case("demo-seeds-zero", "demo --model $M --seeds 0 --out $OUT",
         "seeds must be an integer >= 1"),
    case("demo-limit-zero", "demo --model $M --limit 0 --out $OUT", "limit must be a positive"),
    case("demo-limit-text", "demo --model $M --limit all --out $OUT",
         "argument --limit: invalid int value"),
    case("demo-out-is-file", "demo --model $M --out $AFILE", "is a file, not a folder"),
]

SERVE = [
    case("serve-config-missing", "serve --config @nosuch.yaml", "does not exist"),
    case("serve-config-malformed", "serve --config @bad.yaml",
         "bad.yaml, line 2, column 1: not valid YAML"),
    case("serve-config-empty", "serve --config @empty.yaml",
         "empty.yaml: `tasks:` must list at least one task"),
    case("serve-config-not-utf8", "serve --config @latin1.csv",
         "latin1.csv, line 2: the file is not UTF-8 (byte 0xe9)"),
    case("serve-config-no-tasks", "serve --config @s_notasks.yaml",
         "`tasks:` must list at least one task"),
    case("serve-config-tasks-mapping", "serve --config @s_tasksmap.yaml",
         "`tasks:` must list at least one task"),
    case("serve-config-port-range", "serve --config @s_port.yaml", "port must be in 1..65535"),
    case("serve-config-port-text", "serve --config @s_porttext.yaml",
         "s_porttext.yaml: port must be a whole number, not 'http'"),
    case("serve-config-unknown-calibrator", "serve --config @s_cal.yaml",
         "calibrator 'bogus' is not served online"),
    case("serve-config-shots-text", "serve --config @s_shots.yaml",
         "s_shots.yaml: tasks[0].shots must be a whole number, not 'many'"),
    case("serve-config-unknown-key", "serve --config @s_key.yaml",
         "s_key.yaml: unknown key 'bogus'. Allowed keys: tasks, model"),
    case("serve-config-unknown-task-key", "serve --config @s_taskkey.yaml",
         "s_taskkey.yaml: unknown key 'tasks[0].bogus'. Allowed keys: task, name"),
    case("serve-config-task-twice", "serve --config @s_twice.yaml", "served twice"),
    case("serve-config-entry-without-task", "serve --config @s_notask.yaml",
         "s_notask.yaml: missing required key(s): tasks[0].task"),
    case("serve-config-entry-number", "serve --config @s_entry.yaml", "tasks[0]"),
    case("serve-config-unknown-task", "serve --config @s_unktask.yaml",
         "Unknown task 'nosuchtask'"),
    case("serve-config-warm-start-negative", "serve --config @s_warm.yaml",
         "warm_start must be >= 0"),
    case("serve-config-momentum", "serve --config @s_momentum.yaml", "momentum must be"),
    case("serve-config-bcl-labelled", "serve --config @s_bcl.yaml", "bcl needs labelled >= 2"),
    case("serve-config-backend", "serve --config @s_backend.yaml", "backend must be one of"),
    case("serve-config-chat", "serve --config @s_chat.yaml", "chat must be auto, on or off"),
    case("serve-config-batch-wait", "serve --config @s_wait.yaml", "batch_wait_ms must be >= 0"),
    case("serve-config-max-batch", "serve --config @s_maxbatch.yaml", "max_batch must be >= 1"),
    case("serve-config-bool", "serve --config @s_bool.yaml", "must be true or false"),
    case("serve-no-task", "serve", "No tasks to serve"),
    case("serve-port-zero", "serve --task sst2 --port 0", "port must be in 1..65535"),
    case("serve-save-every-zero", "serve --task sst2 --save-every 0", "save_every must be >= 1"),
    case("serve-warm-start-negative", "serve --task sst2 --warm-start -1",
         "warm_start must be >= 0"),
    case("serve-shots-negative", "serve --task sst2 --shots -1", "shots must be >= 0"),
    case("serve-unknown-calibrator", "serve --task sst2 --calibrator linc",
         "argument --calibrator: invalid choice"),
    case("serve-api-key-unset", "serve --task sst2 --api-key-env NO_SUCH_ENV_VAR_XYZ",
         "NO_SUCH_ENV_VAR_XYZ, which is unset or empty"),
    case("serve-unknown-task", "serve --task nosuchtask", "Unknown task 'nosuchtask'"),
    case("serve-task-file-missing", "serve --task @nosuch.yaml", "does not exist"),
    case("serve-state-dir-is-file", "serve --task sst2 --state-dir @afile", "afile"),
]

OTHER = [
    case("unknown-command", "bogus", "argument COMMAND: invalid choice: 'bogus'"),
]

CLI_CASES = (TASKS + ICL + CALIBRATE + REASON + GENERATE + COMPRESS + BIAS + TRAIN + INSTRUCT
             + MODELS + DEMO + SERVE + OTHER)


@pytest.fixture
def _no_server(monkeypatch):
    """``lmboost serve`` builds its app (every check before the model loads) but never serves."""
    import lmboost.serving as serving

    def build_only(config, backend=None):
        serving.build_app(config, backend)
        raise ModelWouldLoad("the server would start")

    monkeypatch.setattr("lmboost.cli.serve_cmd.serve", build_only)


@pytest.mark.parametrize(("argv", "message", "model", "code"), CLI_CASES)
def test_cli_fault(argv, message, model, code, fx, tiny_model_dir, tmp_path, monkeypatch,
                   capsys, request):
    if not model:
        request.getfixturevalue("no_model")
    request.getfixturevalue("_no_server")
    monkeypatch.chdir(tmp_path)
    fails(_expand(argv, fx, tiny_model_dir, tmp_path / "out"), message, capsys, code)


# --------------------------------------------------------------------------- Python API cases

GOOD = [[-1.0, -2.0], [-0.5, -1.5], [-2.0, -0.1]]
BAD_SCORES = {
    "1d": ([-1.0, -2.0], "N x K matrix"),
    "3d": ([[[-1.0, -2.0]]], "N x K matrix"),
    "nan": ([[-1.0, float("nan")], [-1.0, -2.0]], "non-finite"),
    "inf": ([[-1.0, -np.inf], [-1.0, -2.0]], "non-finite"),
    "one-label": ([[-1.0], [-2.0]], "K >= 2"),
    "no-rows": (np.zeros((0, 2)), "no rows"),
    "text": ([["a", "b"]], "numeric"),
    "ragged": ([[-1.0, -2.0], [-1.0]], "numeric"),
}
LABEL_SCORE_METHODS = ("none", "cc", "dc", "pc", "bc", "bcl", "linc", "pmi", "gc")


def _fit(name: str, X, y=None):
    from lmboost.calibration import get_calibrator

    calibrator = get_calibrator(name)
    if name in ("bcl", "linc"):
        y = np.zeros(len(X), dtype=int) if y is None else y
        return calibrator.fit(X, y)
    return calibrator.fit(X)


def _calibration_cases():
    from lmboost.calibration import CalibrationError, get_calibrator

    cases = []
    for name in LABEL_SCORE_METHODS:
        for bad, (X, message) in BAD_SCORES.items():
            y = np.zeros(2, dtype=int) if name in ("bcl", "linc") else None
            if name in ("bcl", "linc") and bad in ("1d", "no-rows", "text", "ragged", "3d"):
                y = None
            cases.append(pytest.param(
                lambda c, name=name, X=X, y=y: _fit(name, X, y), CalibrationError, message,
                id=f"calibrator-{name}-fit-{bad}"))
    for name in ("cc", "dc", "pc", "bc", "bcl", "linc", "pmi", "gc"):
        cases.append(pytest.param(
            lambda c, name=name: get_calibrator(name).predict(GOOD), CalibrationError,
            "is not fitted", id=f"calibrator-{name}-predict-unfitted"))
    for name in ("cc", "pc", "bc", "linc", "none"):
        def mismatch(c, name=name):
            labels = np.array([0, 1, 1])
            calibrator = get_calibrator(name)
            fitted = calibrator.fit(GOOD, labels) if name == "linc" else calibrator.fit(GOOD)
            return fitted.predict([[-1.0, -2.0, -3.0]])
        cases.append(pytest.param(mismatch, CalibrationError, "was fitted on 2 labels",
                                  id=f"calibrator-{name}-predict-other-k"))
    for name in ("none", "bc"):
        cases.append(pytest.param(
            lambda c, name=name: _fit(name, GOOD).predict([[-1.0, np.nan]]), CalibrationError,
            "non-finite", id=f"calibrator-{name}-predict-nan"))
    for name in ("bcl", "linc"):
        for bad, y, message in (
            ("none", None, "needs gold labels"),
            ("short", np.array([0, 1]), "one label per row"),
            ("float", np.array([0.0, 1.0, 0.5]), "label"),
            ("out-of-range", np.array([0, 1, 5]), "label"),
            ("negative", np.array([0, -1, 1]), "label"),
        ):
            cases.append(pytest.param(
                lambda c, name=name, y=y: get_calibrator(name).fit(GOOD, y), CalibrationError,
                message, id=f"calibrator-{name}-labels-{bad}"))
    F = np.array([[0.1, 0.2], [0.3, 0.1], [0.9, 0.4], [0.2, 0.8]])
    y4 = np.array([0, 1, 0, 1])
    for name in ("hidden", "knn"):
        for bad, call, message in (
            ("1d", lambda cal: cal.fit([0.1, 0.2], [0, 1]), "n x d matrix"),
            ("nan", lambda cal: cal.fit([[0.1, np.nan], [0.2, 0.3]], [0, 1]), "non-finite"),
            ("text", lambda cal: cal.fit([["a", "b"]], [0]), "numeric"),
            ("no-labels", lambda cal: cal.fit(F), "needs gold labels"),
            ("labels-short", lambda cal: cal.fit(F, [0, 1]), "one label per row"),
            ("labels-negative", lambda cal: cal.fit(F, [0, -1, 0, 1]), "non-negative integer"),
            ("one-class", lambda cal: cal.fit(F, y4, n_classes=1), "n_classes must be"),
            ("unfitted", lambda cal: cal.predict(F), "is not fitted"),
            ("other-d", lambda cal: cal.fit(F, y4).predict([[0.1, 0.2, 0.3]]),
             "-dimensional"),
        ):
            cases.append(pytest.param(
                lambda c, name=name, call=call: call(get_calibrator(name)), CalibrationError,
                message, id=f"calibrator-{name}-{bad}"))
    cases += [
        pytest.param(lambda c: get_calibrator("platt"), CalibrationError,
                     "Unknown calibrator 'platt'", id="calibrator-unknown-name"),
        pytest.param(lambda c: get_calibrator("bc", strength=2), CalibrationError,
                     "Bad parameters for calibrator 'bc'", id="calibrator-bad-parameter"),
        pytest.param(lambda c: get_calibrator(""), CalibrationError, "Unknown calibrator",
                     id="calibrator-empty-name"),
    ]
    return cases


def _scorer(c):
    from lmboost import Scorer

    return Scorer(c.tiny_model)


def _yaml_task(c, text: str):
    from lmboost.tasks import task_from_yaml

    (c.tmp / "d.csv").write_text("text,label\ngood,0\nbad,1\n")
    spec = c.tmp / "t.yaml"
    spec.write_text(text)
    return task_from_yaml(spec).load_eval()


def _model_dir(c, damage: str) -> str:
    folder = c.tmp / "model"
    shutil.copytree(c.tiny_model_dir, folder)
    if damage == "config-garbage":
        (folder / "config.json").write_text("{not json")
    elif damage == "config-empty":
        (folder / "config.json").write_text("")
    elif damage == "no-weights":
        (folder / "model.safetensors").unlink()
    elif damage == "weights-truncated":
        weights = folder / "model.safetensors"
        os.truncate(weights, weights.stat().st_size // 3)
    elif damage == "weights-garbage":
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    elif damage == "no-tokenizer":
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer_config.json").unlink()
    return str(folder)


def _load(c, damage: str):
    from lmboost.models import load_model

    return load_model(_model_dir(c, damage), device="cpu")


def _icl_config(c, **changes):
    from lmboost.icl import ICLConfig

    settings = {"task": "sst2", "out": c.tmp / "out", "model": c.tiny_model_dir, **changes}
    return ICLConfig(**settings)


def _run_icl(c, **changes):
    from lmboost.icl import run_icl

    return run_icl(_icl_config(c, **changes), progress=False)


def _mixture(data):
    from lmboost.instruct.mixture import config_from_dict

    return config_from_dict(data)


def _recipe(data):
    from lmboost.training import build_config

    return build_config({"recipe": "classify", "task": "sst2", "out": "o", **data})


def _serve(**changes):
    from lmboost.serving import ServeConfig, ServedTask

    tasks = changes.pop("tasks", [ServedTask(task="sst2")])
    ServeConfig(tasks=tasks, **changes).validate()


def _served(**changes):
    from lmboost.serving import ServeConfig, ServedTask

    ServeConfig(tasks=[ServedTask(task="sst2", **changes)]).validate()


def _api_cases():
    from lmboost.instruct import MixtureError
    from lmboost.serving import ServeConfigError
    from lmboost.training import RecipeError

    p = pytest.param
    return [
        # ------------------------------------------------------------ Scorer
        p(lambda c: _scorer(c).loglikelihood([]), ScoringError, "No requests to score",
          id="scorer-no-pairs"),
        p(lambda c: _scorer(c).loglikelihood([("Review: fine", "")]), ScoringError,
          "Empty continuation", id="scorer-empty-continuation"),
        p(lambda c: _scorer(c).loglikelihood([("good " * 400, " positive")]), ScoringError,
          "context window", id="scorer-too-long"),
        p(lambda c: _scorer(c).score_choices([], [" a", " b"]), ScoringError,
          "contexts must be a non-empty list", id="scorer-no-contexts"),
        p(lambda c: _scorer(c).score_choices("one context", [" a", " b"]), ScoringError,
          "contexts must be a non-empty list", id="scorer-context-string"),
        p(lambda c: _scorer(c).score_choices(["x"], " positive"), ScoringError,
          "choices must be a list of strings", id="scorer-choices-string"),
        p(lambda c: _scorer(c).score_choices(["x"], []), ScoringError,
          "choices must be a list of strings", id="scorer-no-choices"),
        p(lambda c: _scorer(c).score_choices(["x", "y"], [[" a", " b"]]), ScoringError,
          "1 choice lists for 2 contexts", id="scorer-choice-lists-short"),
        p(lambda c: _scorer(c).score_choices(["x", "y"], [[" a", " b"], [" a"]]), ScoringError,
          "same, non-zero number of choices", id="scorer-choices-ragged"),
        p(lambda c: _scorer(c).score_choices(["x"], [" a", ""]), ScoringError,
          "Empty continuation", id="scorer-choice-empty"),
        p(lambda c: __import__("lmboost").Scorer(c.tiny_model, batch_size=0), ScoringError,
          "batch_size must be at least 1", id="scorer-batch-size-zero"),
        p(lambda c: __import__("lmboost").Scorer(c.tiny_model, truncation="right"),
          ScoringError, "truncation must be 'error' or 'left'", id="scorer-truncation"),
        # ------------------------------------------------------------ load_model
        p(lambda c: __import__("lmboost").load_model(str(c.fx / "nosuch")), ModelNotFoundError,
          "No such file or directory", id="load-model-missing-path"),
        p(lambda c: __import__("lmboost").load_model("nosuch-alias"), ModelNotFoundError,
          "Cannot load 'nosuch-alias'", id="load-model-unknown-name"),
        p(lambda c: __import__("lmboost").load_model(str(c.fx / "emptydir")), ModelLoadError,
          "holds no config.json", id="load-model-empty-folder"),
        p(lambda c: __import__("lmboost").load_model(str(c.fx / "good.csv")), ModelLoadError,
          "is a file, not a model", id="load-model-a-csv"),
        p(lambda c: __import__("lmboost").load_model(c.tiny_model_dir, dtype="int3"),
          LmboostError, "Unknown dtype 'int3'", id="load-model-unknown-dtype"),
        p(lambda c: __import__("lmboost").load_model(c.tiny_model_dir, device="tpu"),
          LmboostError, "Unknown device 'tpu'", id="load-model-unknown-device"),
        p(lambda c: _load(c, "config-garbage"), ModelLoadError, "config.json",
          id="load-model-config-garbage"),
        p(lambda c: _load(c, "config-empty"), ModelLoadError, "config.json",
          id="load-model-config-empty"),
        p(lambda c: _load(c, "no-weights"), ModelLoadError, "Could not load a causal LM",
          id="load-model-no-weights"),
        p(lambda c: _load(c, "weights-truncated"), ModelLoadError, "Could not load a causal LM",
          id="load-model-weights-truncated"),
        p(lambda c: _load(c, "weights-garbage"), ModelLoadError, "Could not load a causal LM",
          id="load-model-weights-garbage"),
        p(lambda c: _load(c, "no-tokenizer"), ModelLoadError, "tokenizer",
          id="load-model-no-tokenizer"),
        # ------------------------------------------------------------ task files and tasks
        p(lambda c: __import__("lmboost").get_task("sst-2x"), TaskError, "Unknown task",
          id="get-task-unknown"),
        p(lambda c: __import__("lmboost").get_task(str(c.fx / "nosuch.yml")), DataNotFoundError,
          "does not exist", id="get-task-yml-missing"),
        p(lambda c: __import__("lmboost.tasks").tasks.register_task("sst2"), TaskError,
          "register_task expects a ClassificationTask", id="register-task-not-a-task"),
        p(lambda c: __import__("lmboost.tasks").tasks.register_task(
            __import__("lmboost").get_task("sst2")), TaskError, "sst2",
          id="register-task-twice"),
        p(lambda c: __import__("lmboost").task_from_file(
            c.fx / "good.csv", "{text}", {"0": "neg", "1": "neg"}), TaskError,
          "same label word 'neg'", id="task-from-file-same-words"),
        p(lambda c: __import__("lmboost").task_from_file(
            c.fx / "nosuch.csv", "{text}", ["neg", "pos"]), DataNotFoundError,
          "does not exist", id="task-from-file-missing"),
        p(lambda c: __import__("lmboost").task_from_file(
            c.fx / "good.csv", "{text}", ["neg", "pos"], pool_size=99).load_pool(), TaskError,
          "must be between 1 and 3", id="task-from-file-pool-size"),
        p(lambda c: __import__("lmboost").task_from_file(
            c.fx / "latin1.tsv", "{text}", ["neg", "pos"]).load_eval(), FileEncodingError,
          "latin1.tsv, line 2", id="task-from-file-not-utf8"),
        p(lambda c: __import__("lmboost").task_from_file(
            c.fx / "good.csv", "{text}", ["neg", "pos"], label_column="y").load_eval(),
          TaskError, "missing label column 'y'", id="task-from-file-label-column"),
        p(lambda c: __import__("lmboost").task_from_file(
            c.fx / "good.csv", "{text}", 5), TaskError, "label", id="task-from-file-words-int"),
        p(lambda c: _yaml_task(c, "path: d.csv\ntemplate: '{text}'\nlabel_words: [a, b]\n"
                                  "label_column: 5\n"), TaskError, "`label_column:`",
          id="task-yaml-label-column-int"),
        p(lambda c: _yaml_task(c, "path: d.csv\ntemplate: '{text}'\nlabel_words: [a, b]\n"
                                  "name: [x]\n"), TaskError, "name must be text or null, not ['x']",
          id="task-yaml-name-list"),
        p(lambda c: _yaml_task(c, "path: d.csv\ntemplate: '{text}'\nlabel_words: [a, b]\n"
                                  "demo_separator: [a]\n"), TaskError,
          "demo_separator must be text, not ['a']", id="task-yaml-separator-list"),
        p(lambda c: _yaml_task(c, "path: d.csv\ntemplate: '{text}'\nlabel_words: [a, b]\n"
                                  "pool_size: -2\n"), TaskError, "pool_size",
          id="task-yaml-pool-size-negative"),
        p(lambda c: _yaml_task(c, "path: d.csv\ntemplate: '{text}'\nlabel_words: {}\n"),
          TaskError, "declares no labels", id="task-yaml-words-empty"),
        p(lambda c: _yaml_task(c, "path: d.csv\ntemplate: '{text}'\nlabel_words: [a, '']\n"),
          TaskError, "label", id="task-yaml-word-empty"),
        # ------------------------------------------------------------ run_icl / ICLConfig
        p(lambda c: _run_icl(c, shots=[]), LmboostError, "shots is empty", id="icl-api-no-shots"),
        p(lambda c: _run_icl(c, shots=[1.5]), LmboostError, "non-negative integers",
          id="icl-api-shots-float"),
        p(lambda c: _run_icl(c, shots=[True]), LmboostError, "non-negative integers",
          id="icl-api-shots-bool"),
        p(lambda c: _run_icl(c, seeds="3"), LmboostError, "seeds must be an integer",
          id="icl-api-seeds-text"),
        p(lambda c: _run_icl(c, calibration=[]), LmboostError, "calibration is empty",
          id="icl-api-no-methods"),
        p(lambda c: _run_icl(c, calibration=["BC"]), LmboostError, "Unknown calibration",
          id="icl-api-method-case"),
        p(lambda c: _run_icl(c, limit=0.5), LmboostError, "limit must be a positive integer",
          id="icl-api-limit-float"),
        p(lambda c: _run_icl(c, dtype="fp8"), LmboostError, "dtype must be one of",
          id="icl-api-dtype"),
        p(lambda c: _run_icl(c, backend="tgi"), LmboostError, "backend must be one of",
          id="icl-api-backend"),
        p(lambda c: _run_icl(c, task="nosuch"), TaskError, "Unknown task", id="icl-api-task"),
        p(lambda c: _run_icl(c, out=c.fx / "afile"), LmboostError, "is a file, not a folder",
          id="icl-api-out-file"),
        # ------------------------------------------------------------ recipes
        p(lambda c: _recipe({"learning_rate": "fast"}), RecipeError,
          "learning_rate must be a number, not 'fast'", id="recipe-lr-text"),
        p(lambda c: _recipe({"max_steps": 2.5}), RecipeError, "max_steps",
          id="recipe-steps-float"),
        p(lambda c: _recipe({"lora": {"r": "big"}}), RecipeError, "lora.r",
          id="recipe-lora-r-text"),
        p(lambda c: _recipe({"lora": {"nosuch": 1}}), RecipeError, "nosuch",
          id="recipe-lora-unknown-key"),
        p(lambda c: _recipe({"labels": []}), RecipeError,
          "labels is an empty list: give its items, or leave it unset", id="recipe-labels-empty"),
        p(lambda c: _recipe({"recipe": "dpo"}), RecipeError, "recipe must be one of",
          id="recipe-unknown-kind"),
        p(lambda c: _recipe({"out": None}), RecipeError,
          "out is not set: give --out DIR (out: in a recipe)", id="recipe-no-output"),
        p(lambda c: __import__("lmboost.training.recipes").training.recipes.read_recipe(
            c.fx / "r_bad.yaml"), RecipeError, "r_bad.yaml, line 2, column 1: not valid YAML",
          id="recipe-read-bad"),
        p(lambda c: __import__("lmboost.training").training.parse_overrides(["=3"]),
          RecipeError, "--set", id="recipe-override-no-key"),
        # ------------------------------------------------------------ mixture YAML
        p(lambda c: _mixture({"sources": {"sst2": 1}}), MixtureError,
          "sources must be a list of texts, not {'sst2': 1}", id="mixture-sources-mapping"),
        p(lambda c: _mixture({"sources": ["sst2"], "size": True}), MixtureError, "size",
          id="mixture-size-bool"),
        p(lambda c: _mixture({"sources": ["sst2"], "cap": 1.5}), MixtureError, "cap",
          id="mixture-cap-float"),
        p(lambda c: _mixture({"sources": ["sst2"], "options_fraction": "half"}), MixtureError,
          "options_fraction", id="mixture-fraction-text"),
        p(lambda c: _mixture({"sources": ["sst2"], "templates_per_example": 0}), MixtureError,
          "templates_per_example", id="mixture-templates-zero"),
        p(lambda c: _mixture({"sources": []}), MixtureError, "sources",
          id="mixture-sources-empty"),
        p(lambda c: _mixture({}), MixtureError,
          "missing required key(s): sources (the list of source names to mix)",
          id="mixture-empty"),
        p(lambda c: __import__("lmboost.instruct").instruct.load_mixture_config(
            c.fx / "nosuch.yaml"), MixtureError, "does not exist", id="mixture-file-missing"),
        # ------------------------------------------------------------ serve config
        p(lambda c: _serve(port=0), ServeConfigError, "port must be in 1..65535",
          id="serve-api-port"),
        p(lambda c: _serve(max_inputs=0), ServeConfigError, "max_inputs must be >= 1",
          id="serve-api-max-inputs"),
        p(lambda c: _serve(dtype="fp8"), ServeConfigError, "dtype must be one of",
          id="serve-api-dtype"),
        p(lambda c: _serve(tasks=[]), ServeConfigError, "No tasks to serve",
          id="serve-api-no-tasks"),
        p(lambda c: _served(calibrator="linc"), ServeConfigError, "is not served online",
          id="serve-api-calibrator"),
        p(lambda c: _served(min_examples=-1), ServeConfigError, "min_examples must be >= 0",
          id="serve-api-min-examples"),
        p(lambda c: _served(momentum=-0.5), ServeConfigError, "momentum must be",
          id="serve-api-momentum"),
        p(lambda c: __import__("lmboost.serving").serving.load_serve_config(
            c.fx / "s_port.yaml"), ServeConfigError, "port must be in 1..65535",
          id="serve-api-load-port"),
    ]


API_CASES = _calibration_cases() + _api_cases()


@pytest.mark.parametrize(("call", "error", "message"), API_CASES)
def test_api_fault(call, error, message, fx, tiny_model_dir, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    names = call.__code__.co_names + tuple(
        n for const in call.__code__.co_consts if hasattr(const, "co_names")
        for n in const.co_names
    )
    model = None
    if "_scorer" in names or "tiny_model" in names:
        model = request.getfixturevalue("tiny_model")
    else:
        request.getfixturevalue("no_model")
    c = SimpleNamespace(fx=fx, tmp=tmp_path, tiny_model_dir=tiny_model_dir, tiny_model=model)
    with pytest.raises(error) as caught:
        call(c)
    assert message in str(caught.value)
    assert str(caught.value).strip(), "an error without a message"


# --------------------------------------------------------------------------- a small icl run

TINY_TEMPLATE = "Review: {text}\\nSentiment:"


def _tiny_task(folder: Path) -> Path:
    """A two-class CSV task (6 eval rows, a pool of 9) declared in a YAML file."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text,label"] + [
        f"{'great' if i % 2 else 'boring'} {i},{'pos' if i % 2 else 'neg'}" for i in range(16)
    ]
    (folder / "eval.csv").write_text("\n".join(rows[:7]) + "\n")
    (folder / "pool.csv").write_text("\n".join(rows[:1] + rows[7:]) + "\n")
    spec = folder / "task.yaml"
    spec.write_text(f'name: tiny-faults\npath: eval.csv\npool: pool.csv\n'
                    f'template: "{TINY_TEMPLATE}"\nlabel_words: {{neg: negative, pos: positive}}\n')
    return spec


def _icl_argv(model: str, spec: Path, out: Path, seeds: int = 1) -> list[str]:
    return ["icl", "--model", model, "--task", str(spec), "--shots", "0,1", "--seeds",
            str(seeds), "--calibration", "none,bc", "--labelled-size", "0", "--n-domain", "2",
            "--out", str(out)]


@pytest.fixture(scope="module")
def icl_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished icl run of the tiny model (2 runs: 0 and 1 shots)."""
    folder = tmp_path_factory.mktemp("icl-run")
    out = folder / "run"
    assert main(_icl_argv(tiny_model_dir, _tiny_task(folder / "task"), out)) == 0
    return out


@pytest.fixture
def run_copy(icl_run, tmp_path) -> Path:
    return Path(shutil.copytree(icl_run, tmp_path / "run"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# --------------------------------------------------------------------------- damaged run folders


def _damage_run(run: Path, damage: str) -> None:
    results = run / "results.json"
    scores = run / "scores" / "shots0-seed0.npz"
    if damage == "results-truncated":
        results.write_bytes(results.read_bytes()[:50])
    elif damage == "results-list":
        results.write_text("[]")
    elif damage == "results-empty":
        results.write_text("")
    elif damage == "results-other-kind":
        results.write_text(json.dumps({"kind": "reasoning"}))
    elif damage == "scores-missing":
        scores.unlink()
    elif damage == "scores-truncated":
        scores.write_bytes(scores.read_bytes()[:100])
    elif damage == "scores-garbage":
        scores.write_bytes(b"not an npz archive")
    elif damage == "scores-other-run":
        shutil.copyfile(run / "scores" / "shots1-seed0.npz", scores)
    elif damage == "lock-folder":
        (run / ".lmboost-lock").mkdir()
    elif damage == "lock-garbage":
        (run / ".lmboost-lock").write_text('{"pid": 1}')
    elif damage == "no-results":
        results.unlink()


@pytest.mark.parametrize(("damage", "message"), [
    ("results-truncated", "is not the record of an icl run"),
    ("results-list", "is not the record of an icl run"),
    ("results-empty", "is not the record of an icl run"),
    ("results-other-kind", "is not the record of an icl run"),
    ("scores-missing", "shots0-seed0.npz is missing"),
    ("scores-truncated", "shots0-seed0.npz is unreadable"),
    ("scores-garbage", "shots0-seed0.npz is unreadable"),
    ("scores-other-run", "holds other scores than"),
    ("lock-folder", "names no holder"),
    ("lock-garbage", "names no holder"),
    ("no-results", "is an lm-eval log: give --out"),
])
def test_damaged_run_folder_is_named(run_copy, capsys, damage, message, no_model):
    _damage_run(run_copy, damage)
    before = _files(run_copy)
    fails(["calibrate", str(run_copy), "--calibration", "none,pc"], message, capsys)
    assert _files(run_copy) == before  # nothing written over, nothing half-written


@pytest.mark.parametrize(("argv", "message"), [
    (["--out", "@afile"], "is a file, not a folder"),
    (["--out", "@afile/x"], "a part of it is a file"),
    (["--calibration", "pmi"], "lacks model outputs: pmi needs"),
    (["--calibration", "knn,gc"], "lacks model outputs"),
    (["--calibration", "platt"], "Unknown calibration method(s) 'platt'"),
    (["--calibration", "bc,bc"], "lists a method twice"),
    (["--labelled", "@good.csv"], "--labelled is for lm-eval logs"),
])
def test_calibrate_run_faults(run_copy, fx, capsys, argv, message, no_model):
    before = _files(run_copy)
    argv = [str(fx / a[1:]) if a.startswith("@") else a for a in argv]
    fails(["calibrate", str(run_copy), *argv], message, capsys)
    assert _files(run_copy) == before


def test_damaged_settings_stop_an_icl_rerun(run_copy, tiny_model_dir, tmp_path, capsys, no_model):
    (run_copy / "settings.json").write_text('{"command": "ic')
    argv = _icl_argv(tiny_model_dir, _tiny_task(tmp_path / "task"), run_copy)
    fails(argv, "is not a readable settings record", capsys)


# --------------------------------------------------------------------------- a full disk

class _FailingFile:
    """A file whose writes stop half-way with ENOSPC, as on a full disk."""

    def __init__(self, f, code: int = errno.ENOSPC):
        self._f = f
        self.code = code

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        raise OSError(self.code, os.strerror(self.code))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


class _FullDiskOS:
    """The ``os`` module as a module that writes records sees it on a full disk: ``fsync``
    (``where="fsync"``) or the writes themselves (``where="write"``) fail with ENOSPC (or with
    ``code``: EROFS for a disk remounted read-only, say)."""

    def __init__(self, where: str, code: int = errno.ENOSPC):
        self.where = where
        self.code = code

    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd):
        if self.where == "fsync":
            raise OSError(self.code, os.strerror(self.code))
        os.fsync(fd)

    def fdopen(self, fd, *args, **kwargs):
        f = os.fdopen(fd, *args, **kwargs)
        return _FailingFile(f, self.code) if self.where == "write" else f

    def write(self, fd, data):
        if self.where == "write":
            raise OSError(self.code, os.strerror(self.code))
        return os.write(fd, data)


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert not (folder / ".lmboost-lock").exists()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_calibrate_keeps_the_old_results(run_copy, monkeypatch, capsys, where,
                                                   no_model):
    before = _files(run_copy)
    monkeypatch.setattr("lmboost.evaluation.records.os", _FullDiskOS(where))
    err = fails(["calibrate", str(run_copy), "--calibration", "none,pc"],
                "No space left on device", capsys)
    assert "free some space" in err
    assert _files(run_copy) == before
    _no_temporaries(run_copy)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_unwritable_disk_calibrate_keeps_the_old_results(run_copy, monkeypatch, capsys, code,
                                                        no_model):
    """The same without root's exemption: a disk remounted read-only, a permission, a quota."""
    before = _files(run_copy)
    monkeypatch.setattr("lmboost.evaluation.records.os", _FullDiskOS("write", code))
    err = fails(["calibrate", str(run_copy), "--calibration", "none,pc"], os.strerror(code),
                capsys)
    assert "results.json" in err or "report" in err
    assert _files(run_copy) == before
    _no_temporaries(run_copy)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_icl_settings(tiny_model_dir, tmp_path, monkeypatch, capsys, where, no_model):
    out = tmp_path / "out"
    monkeypatch.setattr("lmboost.evaluation.records.os", _FullDiskOS(where))
    fails(_icl_argv(tiny_model_dir, _tiny_task(tmp_path / "task"), out),
          "No space left on device", capsys)
    assert not (out / "settings.json").exists()
    _no_temporaries(out)


def test_full_disk_while_claiming_the_folder(tmp_path, monkeypatch):
    from lmboost.evaluation.store import RunStore

    monkeypatch.setattr("lmboost.evaluation.store.os", _FullDiskOS("fsync"))
    with pytest.raises(LmboostError, match="No space left on device"):
        RunStore(tmp_path / "out", "reason", {"a": 1}).open()
    assert list((tmp_path / "out").iterdir()) == []  # no lock that names no holder


def test_full_disk_item_log_keeps_whole_lines(tmp_path, monkeypatch):
    from lmboost.evaluation.store import RunStore

    with RunStore(tmp_path, "reason", {}) as store:
        log = store.log("items.jsonl")
        log.append({"uid": "a", "text": "one"})
        before = (tmp_path / "items.jsonl").read_bytes()
        monkeypatch.setattr("lmboost.evaluation.store.os", _FullDiskOS("fsync"))
        with pytest.raises(LmboostError, match="No space left on device"):
            log.append({"uid": "b", "text": "two"})
        monkeypatch.undo()
        assert (tmp_path / "items.jsonl").read_bytes() == before
        assert list(log.read()) == ["a"]


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_instruct_build(fx, tmp_path, monkeypatch, capsys, where):
    out = tmp_path / "mix"
    monkeypatch.setattr("lmboost.evaluation.records.os", _FullDiskOS(where))
    fails(["instruct", "build", "--config", str(fx / "m_ok.yaml"), "--out", str(out)],
          "No space left on device", capsys)
    assert not (out / "mixture.jsonl").exists()
    _no_temporaries(out)


# --------------------------------------------------------------------------- unwritable outputs

needs_permissions = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere: chmod does not bite"
)


@needs_permissions
@pytest.mark.parametrize("command", ["calibrate", "instruct", "train", "bias", "compress"])
def test_read_only_out_is_refused(command, run_copy, fx, tiny_model_dir, tmp_path, capsys,
                                  no_model):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    out = str(ro / "out")
    argv = {
        "calibrate": ["calibrate", str(run_copy), "--out", str(ro)],
        "instruct": ["instruct", "build", "--config", str(fx / "m_ok.yaml"), "--out", out],
        "train": ["train", "classify", "--task", "sst2", "--model", tiny_model_dir, "--out", out],
        "bias": ["bias", "--model", tiny_model_dir, "--tests", "weat1", "--out", out],
        "compress": ["compress", "--model", tiny_model_dir, "--prune", "magnitude:0.5",
                     "--out", out],
    }[command]
    try:
        fails(argv, str(ro), capsys)
    finally:
        ro.chmod(0o755)


# --------------------------------------------------------------------------- concurrent runs


@pytest.mark.parametrize("command", ["icl", "reason", "bias", "compress", "demo", "calibrate",
                                     "another-host"])
def test_a_claimed_folder_is_refused(command, run_copy, tiny_model_dir, tmp_path, capsys,
                                     no_model):
    from lmboost.evaluation.store import RunStore

    out = tmp_path / "claimed"
    argv = {
        "icl": _icl_argv(tiny_model_dir, _tiny_task(tmp_path / "task"), out),
        "reason": ["reason", "--task", "gsm8k", "--limit", "1", "--model", tiny_model_dir,
                   "--out", str(out)],
        "bias": ["bias", "--model", tiny_model_dir, "--tests", "weat1", "--out", str(out)],
        "compress": ["compress", "--model", tiny_model_dir, "--prune", "magnitude:0.5",
                     "--out", str(out)],
        "demo": ["demo", "--model", tiny_model_dir, "--out", str(out)],
        "calibrate": ["calibrate", str(run_copy), "--out", str(out)],
        "another-host": ["calibrate", str(run_copy), "--out", str(out)],
    }[command]
    if command == "another-host":  # a lock of a run on another machine is never taken over
        out.mkdir()
        (out / ".lmboost-lock").write_text(json.dumps(
            {"pid": 1, "host": "elsewhere", "command": "icl", "started": "2026-01-01"}))
        fails(argv, "in use by lmboost icl (pid 1 on elsewhere", capsys)
        assert (out / ".lmboost-lock").exists()
        return
    with RunStore(out, "icl", None):
        fails(argv, f"in use by lmboost icl (pid {os.getpid()}", capsys)
        assert (out / ".lmboost-lock").exists()  # the holder's lock is left alone
    assert not (out / ".lmboost-lock").exists()


# --------------------------------------------------------------------------- interrupted runs


def test_interrupted_icl_resumes_to_the_same_results(tiny_model_dir, tmp_path, monkeypatch,
                                                     capsys):
    import lmboost.icl.runner as runner

    spec = _tiny_task(tmp_path / "task")
    reference = tmp_path / "reference"
    assert main(_icl_argv(tiny_model_dir, spec, reference, seeds=2)) == 0
    expected = json.loads((reference / "results.json").read_text())

    calls = []
    score_run = runner.score_run

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return score_run(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(runner, "score_run", interrupted)
    capsys.readouterr()
    assert main(_icl_argv(tiny_model_dir, spec, out, seeds=2)) == 130
    err = capsys.readouterr().err
    assert "interrupted; finished work is saved and a rerun resumes" in err
    assert "Traceback" not in err
    assert not (out / "results.json").exists() and not (out / ".lmboost-lock").exists()
    assert len(list((out / "scores").glob("*.npz"))) == 2
    monkeypatch.undo()

    assert main(_icl_argv(tiny_model_dir, spec, out, seeds=2)) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["scores_from_cache"] for r in results["runs"]] == [True, True, False, False]
    for got, want in zip(results["runs"], expected["runs"]):
        assert got["scores"] == want["scores"] and got["metrics"] == want["metrics"]
    assert results["summary"] == expected["summary"]


def test_interrupted_reasoning_resumes_to_the_same_results(tmp_path, monkeypatch, capsys):
    from conftest import save_tiny_llama

    import lmboost.reasoning.runner as runner

    model = tmp_path / "model"
    save_tiny_llama(model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 8192}))

    def argv(out):
        return ["reason", "--task", "bbh:sports_understanding", "--mode", "direct", "--limit",
                "3", "--max-new-tokens", "2", "--batch-size", "1", "--model", str(model),
                "--out", str(out)]

    assert main(argv(tmp_path / "reference")) == 0
    expected = json.loads((tmp_path / "reference" / "results.json").read_text())

    calls = []
    solve = runner._Solver.solve

    def interrupted(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return solve(self, batch)

    monkeypatch.setattr(runner._Solver, "solve", interrupted)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(argv(out)) == 130
    assert "interrupted; finished work is saved" in capsys.readouterr().err
    assert len((out / "items.jsonl").read_text().splitlines()) == 1
    monkeypatch.undo()
    assert main(argv(out)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_items"] == expected["n_items"] == 3
    assert results["accuracy"] == expected["accuracy"]

    def kept(items):  # what an item is, without its timing
        return [{k: v for k, v in i.items() if k != "seconds"} for i in items]

    assert kept(results["items"]) == kept(expected["items"])


# --------------------------------------------------------------------------- unknown names, fixed


def test_a_misspelt_model_does_not_pin_the_folder(tiny_model_dir, tmp_path, capsys):
    spec = _tiny_task(tmp_path / "task")
    out = tmp_path / "out"
    fails(_icl_argv("no-such-model", spec, out), "Cannot load 'no-such-model'", capsys)
    assert not (out / "settings.json").exists()
    assert main(_icl_argv(tiny_model_dir, spec, out)) == 0  # not "other settings (model: ...)"


def test_serve_config_settings_are_not_replaced_by_flag_defaults(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("lmboost.cli.serve_cmd.serve", lambda config: seen.update(c=config))
    path = tmp_path / "serve.yaml"
    path.write_text("tasks: [sst2]\ndtype: float16\ndevice: cpu\nport: 8123\n")
    assert main(["serve", "--config", str(path)]) == 0
    assert (seen["c"].dtype, seen["c"].device, seen["c"].port) == ("float16", "cpu", 8123)
    assert main(["serve", "--config", str(path), "--dtype", "bfloat16"]) == 0
    assert seen["c"].dtype == "bfloat16"  # a flag given still wins
    assert main(["serve", "--task", "sst2"]) == 0
    assert (seen["c"].backend, seen["c"].dtype, seen["c"].device) == ("hf", "auto", "auto")


# --------------------------------------------------------------------------- damaged model caches


@pytest.fixture
def tiny_gguf(tmp_path, monkeypatch, tiny_model_dir) -> Path:
    """A stand-in GGUF whose "conversion" copies the tiny Llama (as in test_safety)."""
    from lmboost.models import loading

    monkeypatch.setenv("LMBOOST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "_convert_gguf",
                        lambda gguf, out: shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF stand-in for the tiny model")
    return gguf


@pytest.mark.parametrize("damage", ["manifest-garbage", "manifest-list", "weights-folder",
                                    "config-garbage", "extra-shard-truncated", "manifest-size"])
def test_damaged_model_cache_is_reported(tiny_gguf, capsys, damage):
    from lmboost.models import load_model

    folder = load_model(str(tiny_gguf), device="cpu").path
    manifest = folder / "lmboost-manifest.json"
    manifest = manifest if manifest.exists() else next(folder.glob("*manifest*"))
    weights = folder / "model.safetensors"
    if damage == "manifest-garbage":
        manifest.write_text("{not json")
    elif damage == "manifest-list":
        manifest.write_text("[]")
    elif damage == "weights-folder":
        weights.unlink()
        weights.mkdir()
    elif damage == "config-garbage":
        (folder / "config.json").write_text("{not json")
    elif damage == "extra-shard-truncated":
        (folder / "model-2.safetensors").write_bytes(weights.read_bytes()[:200])
    elif damage == "manifest-size":
        data = json.loads(manifest.read_text())
        data["files"]["model.safetensors"]["size"] += 1
        manifest.write_text(json.dumps(data))
    with pytest.raises((CacheError, ModelLoadError)) as err:
        load_model(str(tiny_gguf), device="cpu")
    assert "lmboost models pull" in str(err.value) or "config.json" in str(err.value)
    fails(["models", "info", str(tiny_gguf)], str(tiny_gguf), capsys)
