"""lmboost calibrate on the per-sample logs of a real lm-evaluation-harness run (the tiny random
model, a local multiple-choice task), and the log reader on hand-written lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lmboost.calibration import BatchCalibration
from lmboost.cli import main
from lmboost.errors import LmboostError
from lmboost.evaluation.records import read_json
from lmboost.icl.lm_eval_log import read_lm_eval_log

TEST_ROWS = [
    ("a great movie", 1), ("boring and far too long", 0), ("great film", 1), ("too boring", 0),
    ("great and long", 1), ("boring", 0), ("a great film", 1), ("far too long", 0),
    ("dull and boring", 0), ("long", 0),
]  # 6 negative, 4 positive: a swapped label order would not give the same accuracy
TRAIN_ROWS = [("great", 1), ("long and boring", 0), ("a great and long movie", 1), ("dull", 0)]


def _task_yaml(name: str, data: Path) -> str:
    return (
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {data}\n"
        "validation_split: validation\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Review: {{text}}\\nSentiment:"\n'
        'doc_to_target: "{{label}}"\n'
        'doc_to_choice: ["negative", "positive"]\n'
        "metric_list:\n  - metric: acc\n"
    )


@pytest.fixture(scope="module")
def lm_eval_run(tiny_model_dir, tmp_path_factory):
    """lm_eval's own CLI (in this process) with --log_samples on two local tasks: the test
    documents and a few labelled training documents. Returns its output folder."""
    pytest.importorskip("lm_eval")
    root = tmp_path_factory.mktemp("lm-eval")
    tasks = root / "tasks"
    tasks.mkdir()
    for name, rows in (("tiny_sent", TEST_ROWS), ("tiny_sent_train", TRAIN_ROWS)):
        data = tasks / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
        (tasks / f"{name}.yaml").write_text(_task_yaml(name, data))
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_DATASETS_OFFLINE", "1")
    patch.setenv("HF_DATASETS_CACHE", str(root / "datasets-cache"))
    patch.setattr(sys, "argv", [
        "lm_eval", "run", "--model", "hf", "--model_args", f"pretrained={tiny_model_dir}",
        "--tasks", "tiny_sent,tiny_sent_train", "--include_path", str(tasks),
        "--device", "cpu", "--batch_size", "4", "--output_path", str(root / "out"),
        "--log_samples",
    ])
    try:
        from lm_eval.__main__ import cli_evaluate

        cli_evaluate()
    finally:
        patch.undo()
    return root / "out"


def _one(folder: Path, pattern: str) -> Path:
    (path,) = folder.rglob(pattern)
    return path


def _by_hand(samples: Path) -> tuple[np.ndarray, np.ndarray]:
    """The score matrix and gold labels, read straight from the JSON lines."""
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    lines.sort(key=lambda s: s["doc_id"])
    scores = np.array([[float(r[0]) for r in s["filtered_resps"]] for s in lines])
    return scores, np.array([int(s["target"]) for s in lines])


def test_calibrate_reproduces_lm_eval_and_applies_bc(lm_eval_run, tmp_path, capsys):
    samples = _one(lm_eval_run, "samples_tiny_sent_2*.jsonl")
    reported = read_json(_one(lm_eval_run, "results_*.json"))["results"]["tiny_sent"]["acc,none"]
    out = tmp_path / "calibrated"
    argv = ["calibrate", str(samples), "--calibration", "none,bc,pc", "--out", str(out)]
    assert main(argv) == 0
    assert "| bc |" in capsys.readouterr().out
    results = read_json(out / "results.json")
    summary = {r["method"]: r for r in results["summary"]}
    assert summary["none"]["accuracy"]["mean"] == pytest.approx(reported, abs=1e-12)

    scores, labels = _by_hand(samples)
    assert results["eval"]["labels"] == labels.tolist()
    bc_accuracy = float(np.mean(BatchCalibration().fit(scores).predict(scores) == labels))
    assert summary["bc"]["accuracy"]["mean"] == pytest.approx(bc_accuracy, abs=1e-12)
    assert summary["pc"]["status"] == "ok"
    assert results["source"]["reported_acc"] == pytest.approx(reported)
    report = (out / "report.md").read_text()
    assert "lm-evaluation-harness log" in report
    assert "| shots | method | negative | positive |" in report
    assert "±" not in report.split("## Macro-F1")[0]  # one run: no spread to show

    # The output folder is a run folder: it can be recalibrated without the log.
    assert main(["calibrate", str(out), "--calibration", "bc"]) == 0
    again = read_json(out / "results.json")["summary"][0]
    assert again["accuracy"]["mean"] == pytest.approx(bc_accuracy)


def test_methods_the_log_cannot_feed_are_clear_errors(lm_eval_run, tmp_path, capsys):
    samples = _one(lm_eval_run, "samples_tiny_sent_2*.jsonl")
    out = str(tmp_path / "out")
    assert main(["calibrate", str(samples), "--calibration", "none,cc", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmboost: error: cc needs the label scores after content-free inputs")
    assert "Traceback" not in err
    assert main(["calibrate", str(samples), "--calibration", "dc", "--out", out]) == 2
    assert "dc needs the label scores after random in-domain" in capsys.readouterr().err
    assert main(["calibrate", str(samples), "--calibration", "knn", "--out", out]) == 2
    assert "knn needs the next-token distributions of the eval and labelled prompts" in (
        capsys.readouterr().err
    )
    assert main(["calibrate", str(samples), "--calibration", "gc", "--out", out]) == 2
    assert "use lmboost icl for gc" in capsys.readouterr().err
    assert main(["calibrate", str(samples), "--calibration", "linc", "--out", out]) == 2
    assert "--labelled FILE" in capsys.readouterr().err
    assert main(["calibrate", str(samples), "--calibration", "bc"]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    assert main(["calibrate", str(lm_eval_run), "--calibration", "bc", "--out", out]) == 2
    assert "several samples files" in capsys.readouterr().err


def test_labelled_log_feeds_linc_and_bcl(lm_eval_run, tmp_path):
    samples = _one(lm_eval_run, "samples_tiny_sent_2*.jsonl")
    train = _one(lm_eval_run, "samples_tiny_sent_train_*.jsonl")
    out = tmp_path / "out"
    argv = ["calibrate", str(samples), "--labelled", str(train), "--calibration", "linc,bcl",
            "--out", str(out)]
    assert main(argv) == 0
    results = read_json(out / "results.json")
    assert [r["n_labelled"] for r in results["summary"]] == [[4], [4]]
    from lmboost.calibration import LinearProbeCalibration

    scores, labels = _by_hand(samples)
    train_scores, train_labels = _by_hand(train)
    linc = LinearProbeCalibration().fit(train_scores, train_labels)
    assert results["summary"][0]["accuracy"]["mean"] == pytest.approx(
        float(np.mean(linc.predict(scores) == labels))
    )
    with pytest.raises(LmboostError, match="test log itself"):
        from lmboost.icl.posthoc import calibrate_lm_eval

        calibrate_lm_eval(samples, ["linc"], tmp_path / "x", labelled=samples)


# --------------------------------------------------------------------------- the log reader


def _line(doc_id: int, target, lls, options=(" no", " yes"), contexts=None, **extra) -> str:
    contexts = contexts or ["Q?"] * len(lls)
    return json.dumps({
        "doc_id": doc_id,
        "target": str(target),
        "arguments": {
            f"gen_args_{i}": {"arg_0": c, "arg_1": o}
            for i, (c, o) in enumerate(zip(contexts, options))
        },
        "filtered_resps": [[str(ll), "False"] for ll in lls],
        "filter": "none",
        **extra,
    }) + "\n"


def test_reader_targets_as_text_and_mutual_info(tmp_path):
    path = tmp_path / "samples_t_2024-01-01T00-00-00.000001.jsonl"
    path.write_text(
        _line(1, "yes", [-1.0, -2.0]) + _line(0, 1, [-3.0, -0.5])
        + _line(2, 0, [-1.0, -2.0, -9.0, -0.1], options=(" no", " yes", " no", " yes"),
                contexts=["Q?", "Q?", "", ""], metrics=["acc_mutual_info"])
    )
    log = read_lm_eval_log(path)
    assert log.task == "t" and log.doc_ids == [0, 1, 2]
    np.testing.assert_array_equal(log.scores, [[-3.0, -0.5], [-1.0, -2.0], [-1.0, -2.0]])
    assert log.labels.tolist() == [1, 1, 0] and log.choices == ["no", "yes"]
    assert log.model is None and log.reported_acc is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (_line(0, 0, [-1.0, -2.0]) + _line(1, 0, [-1.0, -2.0, -3.0], (" a", " b", " c")),
         "documents have 2, 3 choices"),
        (_line(0, 0, [-1.0, -2.0], contexts=["The cat", "The dog"]), "own context"),
        (_line(0, "maybe", [-1.0, -2.0]), "target 'maybe' is neither"),
        (_line(0, 1, [-1.0, -2.0], acc=1.0), "disagree with the per-document 'acc'"),
        ('{"doc_id": 0, "resps": []}\n', "not an lm-evaluation-harness sample"),
        ("{not json\n", "line 1: not valid JSON"),
    ],
)
def test_reader_errors(tmp_path, lines, message):
    path = tmp_path / "samples_t_2024-01-01T00-00-00.000001.jsonl"
    path.write_text(lines)
    with pytest.raises(LmboostError, match=message):
        read_lm_eval_log(path)
