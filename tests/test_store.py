"""The run store every command writes through: the lock, the settings check, --restart, the item
log, --out checked before model work, results keyed by the weights' content, no NaN stored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_tiny_llama

from lmboost.bias import BiasConfig, run_bias
from lmboost.cli import main
from lmboost.compression.runner import CompressConfig, run_compression
from lmboost.errors import LmboostError
from lmboost.evaluation.records import read_json
from lmboost.evaluation.store import LOCK, SETTINGS, RunStore
from lmboost.icl import ICLConfig, run_icl
from lmboost.icl.posthoc import calibrate_run
from lmboost.models import load_model
from lmboost.models.identity import weights_fingerprint
from lmboost.reasoning import ReasoningConfig, run_reasoning

TASK = "Review: {text}\\nSentiment:"


def _task(folder: Path) -> Path:
    """A two-class CSV task (6 eval rows, a pool of 10) declared in a YAML file."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["text,label"] + [
        f"{'great' if i % 2 else 'boring'} {i},{'pos' if i % 2 else 'neg'}" for i in range(16)
    ]
    (folder / "eval.csv").write_text("\n".join(rows[:7]) + "\n")
    (folder / "pool.csv").write_text("\n".join(rows[:1] + rows[7:]) + "\n")
    spec = folder / "task.yaml"
    spec.write_text(f'name: tiny-store\npath: eval.csv\npool: pool.csv\ntemplate: "{TASK}"\n'
                    "label_words: {neg: negative, pos: positive}\n")
    return spec


def _icl(model: str, task: Path, out: Path, **changes) -> ICLConfig:
    config = ICLConfig(model=model, task=str(task), out=out, shots=[0], seeds=1,
                       calibration=["none", "bc"], labelled_size=0, n_domain=2)
    return replace(config, **changes)


def _reasoning_model(path: Path, seed: int = 0) -> str:
    """The tiny model with an 8192-token window (few-shot prompts are long under its small
    vocabulary), saved to ``path``."""
    save_tiny_llama(path, seed=seed)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 8192}))
    return str(path)


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not be loaded")


def _holder(out: Path, command: str, then: str) -> subprocess.Popen:
    """Another process that claims ``out`` for ``command``, says "held", then runs ``then``."""
    code = (
        "import os, sys\n"
        "from lmboost.evaluation.store import RunStore\n"
        f"store = RunStore({str(out)!r}, {command!r}, {{}})\n"
        "store.open()\n"
        "print('held', flush=True)\n"
        f"{then}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --------------------------------------------------------------------------- the lock


def test_a_second_run_is_refused_naming_the_holder(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    spec = _task(tmp_path / "task")
    holder = _holder(out, "reason", "sys.stdin.read(); store.close()")
    try:
        with pytest.raises(LmboostError, match=rf"in use by lmboost reason \(pid {holder.pid} "
                           r"on .*started .*Wait for it to finish, or give another --out"):
            run_icl(_icl(tiny_model_dir, spec, out), progress=False)
        argv = ["icl", "--model", tiny_model_dir, "--task", str(spec), "--shots", "0",
                "--seeds", "1", "--calibration", "none", "--labelled-size", "0", "--out",
                str(out)]
        assert main(argv) == 2
        assert f"in use by lmboost reason (pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.communicate("")
    assert not (out / LOCK).exists()  # released on exit
    with pytest.warns(UserWarning, match="is now in"):  # free, but it held reason's settings
        assert main(argv + ["--restart"]) == 0

    # In this process too: a claimed folder is refused to a second store.
    with RunStore(out / "b", "bias", {}), pytest.raises(LmboostError, match="in use"):
        RunStore(out / "b", "bias", {}).open()
    assert not (out / LOCK).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    dead = _holder(out, "icl", "os._exit(0)")  # killed: no release
    dead.wait()
    assert read_json(out / LOCK)["pid"] == dead.pid
    with pytest.warns(UserWarning, match=rf"pid {dead.pid} .*no longer running: taking"):
        results = run_icl(_icl(tiny_model_dir, _task(tmp_path / "task"), out), progress=False)
    assert results["summary"][0]["status"] == "ok"
    assert not (out / LOCK).exists()


def test_a_damaged_scores_file_is_named_and_scored_anew(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    config = _icl(tiny_model_dir, _task(tmp_path / "task"), out)
    first = run_icl(config, progress=False)
    path = out / "scores" / "shots0-seed0.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{path} is unreadable .*computed anew"):
        again = run_icl(config, progress=False)
    assert not again["runs"][0]["scores_from_cache"]
    assert again["runs"][0]["scores"] == first["runs"][0]["scores"]


def test_calibrate_does_not_write_into_a_claimed_run(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    run_icl(_icl(tiny_model_dir, _task(tmp_path / "task"), out), progress=False)
    with RunStore(out, "icl", None), pytest.raises(LmboostError, match="in use by lmboost icl"):
        calibrate_run(out, ["pc"])
    assert calibrate_run(out, ["pc"])["summary"][0]["status"] == "ok"
    assert read_json(out / SETTINGS)["command"] == "icl"  # calibrate leaves the settings


def test_an_unreadable_lock_is_a_clear_error(tmp_path):
    (tmp_path / LOCK).write_text("")
    with pytest.raises(LmboostError, match="names no holder.*delete that file"):
        RunStore(tmp_path, "icl", {}).open()


# --------------------------------------------------------------------------- settings


def test_changed_settings_name_each_setting_and_restart_starts_over(
    tiny_model_dir, tmp_path, capsys
):
    spec = _task(tmp_path / "task")
    out = tmp_path / "out"
    first = run_icl(_icl(tiny_model_dir, spec, out), progress=False)
    assert read_json(out / SETTINGS)["labelled_size"] == 0
    with pytest.raises(LmboostError, match=r"other settings \(labelled_size: 0 -> 2, n_domain: "
                       r"2 -> 3\).*--restart"):
        run_icl(_icl(tiny_model_dir, spec, out, labelled_size=2, n_domain=3), progress=False)
    # Shots, seeds and methods may change: the stored scores are reused.
    more = run_icl(_icl(tiny_model_dir, spec, out, calibration=["pc"], seeds=2), progress=False)
    assert more["runs"][0]["scores_from_cache"] and not more["runs"][1]["scores_from_cache"]

    argv = ["icl", "--model", tiny_model_dir, "--task", str(spec), "--shots", "0", "--seeds",
            "1", "--calibration", "none", "--labelled-size", "2", "--n-domain", "3",
            "--out", str(out)]
    assert main(argv) == 2
    assert "labelled_size: 0 -> 2" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="earlier content of .* is now in .*out.old-"):
        assert main([*argv, "--restart"]) == 0
    (aside,) = tmp_path.glob("out.old-*")
    assert read_json(aside / SETTINGS)["labelled_size"] == 0
    assert read_json(aside / "results.json")["runs"][0]["scores"] == more["runs"][0]["scores"]
    assert not read_json(out / "results.json")["runs"][0]["scores_from_cache"]
    assert read_json(out / SETTINGS)["labelled_size"] == 2
    assert first["model"]["weights"] == read_json(out / "results.json")["model"]["weights"]


def test_reasoning_compares_batch_size_and_restarts(tmp_path):
    out = tmp_path / "run"
    model = _reasoning_model(tmp_path / "model")
    config = ReasoningConfig(task="bbh:sports_understanding", mode="direct", out=out, limit=2,
                             max_new_tokens=2, batch_size=2, model=model)
    run_reasoning(config)
    with pytest.raises(LmboostError, match="batch_size: 2 -> 1"):
        run_reasoning(replace(config, batch_size=1))
    with pytest.warns(UserWarning, match="is now in"):
        assert run_reasoning(replace(config, batch_size=1, restart=True))["n_items"] == 2
    assert len(list(tmp_path.glob("run.old-*/items.jsonl"))) == 1


def test_bias_reruns_are_checked_too(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "bias"
    argv = ["bias", "--model", tiny_model_dir, "--tests", "weat10", "--permutations", "50",
            "--out", str(out)]
    assert main(argv) == 0
    assert main(argv) == 0  # the same settings: run again in place
    argv[6] = "60"
    assert main(argv) == 2
    assert "other settings (permutations: 50 -> 60)" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="is now in"):
        assert main([*argv, "--restart"]) == 0
    assert read_json(out / "results.json")["config"]["permutations"] == 60


def test_another_commands_folder_and_corrupt_settings_are_refused(tmp_path):
    out = tmp_path / "run"
    with RunStore(out, "reason", {"mode": "direct"}):
        pass
    with pytest.raises(LmboostError, match="command: 'reason' -> 'icl'"):
        RunStore(out, "icl", {"mode": "direct"}).open()
    (out / SETTINGS).write_text('{"command": "reas')
    with pytest.raises(LmboostError, match=f"{out / SETTINGS} is not a readable settings "
                       "record.*--restart"):
        RunStore(out, "reason", {"mode": "direct"}).open()
    assert not (out / LOCK).exists()
    with pytest.warns(UserWarning, match="is now in"), RunStore(
        out, "reason", {"mode": "direct"}, restart=True
    ):
        assert read_json(out / SETTINGS) == {"command": "reason", "mode": "direct"}


# --------------------------------------------------------------------------- the item log


def test_item_log_drops_a_torn_last_line_and_names_a_bad_one(tmp_path):
    with RunStore(tmp_path, "generate", {}) as store:
        log = store.log("items.jsonl")
        assert log.read() == {}
        log.append({"uid": "a", "text": "one"})
        log.append({"uid": "b", "text": "two", "score": np.float32(0.5)})
    path = tmp_path / "items.jsonl"
    path.write_bytes(path.read_bytes() + b'{"uid": "c", "te')  # killed mid-write
    with pytest.warns(UserWarning, match="dropped its last line"):
        records = log.read()
    assert list(records) == ["a", "b"] and records["b"]["score"] == 0.5
    log.append({"uid": "c", "text": "three"})
    assert list(log.read()) == ["a", "b", "c"]
    path.write_text(path.read_text() + "[1, 2]\n")
    with pytest.raises(LmboostError, match=f"{path}, line 4 is not an item record: delete"):
        log.read()


# --------------------------------------------------------------------------- --out


def test_an_invalid_out_is_refused_before_the_model_loads(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    monkeypatch.setattr("lmboost.bias.runner.load_model", _no_model)
    monkeypatch.setattr("lmboost.compression.runner.load_model", _no_model)
    spec = _task(tmp_path / "task")
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    with pytest.raises(LmboostError, match="results.txt is a file, not a folder"):
        run_icl(_icl(tiny_model_dir, spec, a_file), progress=False)
    with pytest.raises(LmboostError, match="Cannot create the --out folder .*a part of it is a"):
        run_icl(_icl(tiny_model_dir, spec, a_file / "run"), progress=False)
    with pytest.raises(LmboostError, match="is a file, not a folder"):
        run_reasoning(ReasoningConfig(task="gsm8k", out=a_file, model=tiny_model_dir, limit=1))
    with pytest.raises(LmboostError, match="is a file, not a folder"):
        run_bias(BiasConfig(model=tiny_model_dir, out=a_file, tests=["weat10"]), progress=False)
    with pytest.raises(LmboostError, match="is a file, not a folder"):
        run_compression(CompressConfig(out=a_file, model=tiny_model_dir, prune="magnitude:0.5"))
    assert main(["reason", "--task", "gsm8k", "--model", tiny_model_dir, "--out",
                 str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_out_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("lmboost.evaluation.store.load_backend", _no_model)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(LmboostError, match="is not writable"):
            run_icl(_icl(tiny_model_dir, _task(tmp_path / "task"), out), progress=False)
    finally:
        out.chmod(0o755)


# --------------------------------------------------------------------------- identity by content


def test_replaced_weights_are_rescored_the_same_weights_elsewhere_are_not(tmp_path):
    model = tmp_path / "mymodel"
    save_tiny_llama(model, seed=0)
    spec = _task(tmp_path / "task")
    out = tmp_path / "out"
    first = run_icl(_icl(str(model), spec, out), progress=False)
    assert run_icl(_icl(str(model), spec, out), progress=False)["runs"][0]["scores_from_cache"]

    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(str(model))  # content, not name

    save_tiny_llama(model, seed=1)  # other weights in the same folder
    second = run_icl(_icl(str(model), spec, out), progress=False)
    (old,), (new,) = first["runs"], second["runs"]
    assert not new["scores_from_cache"] and new["fingerprint"] != old["fingerprint"]
    assert second["model"]["weights"] != first["model"]["weights"]
    assert not np.allclose(new["scores"]["eval"], old["scores"]["eval"])
    assert run_icl(_icl(str(model), spec, out), progress=False)["runs"][0]["scores_from_cache"]


def test_a_hub_id_is_keyed_by_its_cached_snapshot(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--tiny"
    for commit, seed in (("a" * 40, 0), ("b" * 40, 1)):
        save_tiny_llama(repo / "snapshots" / commit, seed=seed)
    (repo / "refs").mkdir()
    assert weights_fingerprint("someone/not-downloaded") is None
    (repo / "refs" / "main").write_text("a" * 40)
    first = weights_fingerprint("someone/tiny")
    local = shutil.copytree(repo / "snapshots" / ("a" * 40), tmp_path / "local")
    assert first == weights_fingerprint(str(local))  # the same files: the same weights
    (repo / "refs" / "main").write_text("b" * 40)  # the cache now resolves another revision
    assert weights_fingerprint("someone/tiny") not in (None, first)


def test_reasoning_refuses_replaced_weights(tmp_path):
    model = tmp_path / "mymodel"
    config = ReasoningConfig(task="bbh:sports_understanding", mode="direct", out=tmp_path / "r",
                             limit=1, max_new_tokens=2, model=_reasoning_model(model))
    run_reasoning(config)
    _reasoning_model(model, seed=1)
    with pytest.raises(LmboostError, match="model_weights: '[0-9a-f]{64}' -> '[0-9a-f]{64}'"):
        run_reasoning(config)


def test_non_finite_scores_are_never_stored(tmp_path):
    model = tmp_path / "broken"
    save_tiny_llama(model)
    loaded = load_model(str(model), device="cpu")
    with torch.no_grad():
        loaded.model.lm_head.weight.fill_(float("nan"))
    loaded.model.save_pretrained(model)
    spec = _task(tmp_path / "task")
    out = tmp_path / "out"
    with pytest.raises(LmboostError, match="non-finite values .*eval.* at 0 shots, seed 0; "
                       "nothing is stored"):
        run_icl(_icl(str(model), spec, out), progress=False)
    assert not list(out.rglob("*.npz")) and not (out / "results.json").exists()
    assert not (out / LOCK).exists()

    save_tiny_llama(model)  # the model fixed: the same command works, nothing deleted by hand
    results = run_icl(_icl(str(model), spec, out), progress=False)
    assert np.isfinite(np.array(results["runs"][0]["scores"]["eval"])).all()
