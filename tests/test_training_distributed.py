"""``lmboost train`` in two real processes on the CPU (gloo), launched with ``torchrun`` and
``accelerate launch``: the same run as one process at the same global batch, one writer, resume
after a kill.

Every two-process run uses 4 examples per process (global batch 8) and is compared with an
in-process run at batch 8 on a tiny random Llama: logged losses and gradient norms agree within
a relative ``LOSS_RTOL`` = 1e-4 at every step, and the saved weights within ``WEIGHT_ATOL`` =
1e-4 (measured: 5e-6; six steps move the weights by about 3e-2). A process that trained alone,
or a loss scaled by the number of processes, misses these by orders of magnitude. LoRA runs
with adapter dropout 0: dropout draws different masks in different processes.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from lmboost.training import build_config, train

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available",
)

ROOT = Path(__file__).resolve().parents[1]
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-4
TIMEOUT_S = 300  # per launch; a launch takes 10-40 s on two cores
SETTINGS: dict[str, Any] = {
    "recipe": "classify", "labels": ["neg", "pos"], "max_steps": 6, "learning_rate": 1e-2,
    "logging_steps": 1, "eval_steps": 100, "save_steps": 2, "load_best_model_at_end": False,
    "progress": False,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """32 training rows (global batch 8: 4 steps an epoch) and 8 evaluation rows."""
    folder = tmp_path_factory.mktemp("distributed-data")
    texts = ["a great movie", "boring and far too long", "far too long a movie", "great fun"]
    for name, n in (("train", 32), ("eval", 8)):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                writer.writerow([f"{texts[i % 4]} {name} {i}", "pos" if i % 2 else "neg"])
    return {"data": str(folder / "train.csv"), "eval_data": str(folder / "eval.csv")}


@pytest.fixture(scope="module")
def settings(tiny_model_dir, data) -> dict[str, Any]:
    return {**SETTINGS, "model": tiny_model_dir, **data}


@pytest.fixture(scope="session")
def launch_env(tmp_path_factory) -> dict[str, str]:
    """The subprocesses' environment: this checkout's sources, one thread per process, offline.

    Where bytecode writing is off (PYTHONDONTWRITEBYTECODE), compiled modules go to a session
    folder instead, filled once by one process here, so that no launch compiles transformers
    again in every process (~25 s each).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p
    )
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if env.get("PYTHONDONTWRITEBYTECODE") and not env.get("PYTHONPYCACHEPREFIX"):
        env.pop("PYTHONDONTWRITEBYTECODE")
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
        modules = ("lmboost.cli", "lmboost.training.trainer", "peft", "torch.distributed.run",
                   "accelerate.commands.launch", "transformers.models.llama.modeling_llama")
        _launch([sys.executable, "-c", f"import {', '.join(modules)}"], env)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(command: list[str], env: dict[str, str], *, expect_success: bool = True) -> str:
    """Run a launcher in its own process group; returns its output. The whole group is killed
    on timeout or interruption, and a failure shows the output."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command[:6]} timed out after {TIMEOUT_S} s:\n{output[-8000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if (process.returncode == 0) != expect_success:
        pytest.fail(f"{command[:6]} exited with {process.returncode}:\n{output[-8000:]}")
    return output


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", *args]


def _accelerate(*args: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(ROOT / "recipes" / "accelerate" / "ddp.yaml"), "--num_processes", "2",
            "--main_process_port", str(_free_port()), *args]


def _cli(settings: dict[str, Any], out: Path, *flags: str) -> list[str]:
    """``-m lmboost.cli train RECIPE --set KEY=VALUE ... --out OUT`` for ``settings``."""
    args = ["-m", "lmboost.cli", "train", settings["recipe"], *flags, "--out", str(out)]
    for key, value in _flat(settings).items():
        if key not in ("recipe", "out"):
            args += ["--set", f"{key}={value}"]
    return args


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, bool):
            out[f"{prefix}{key}"] = str(value).lower()
        elif isinstance(value, list):
            out[f"{prefix}{key}"] = ",".join(map(str, value))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def _one_process(settings: dict[str, Any], out: Path) -> dict[str, Any]:
    """The reference: this process, batch 8."""
    return train(build_config({**settings, "per_device_train_batch_size": 8,
                               "out": str(out)}))


def _record(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def _assert_same_run(two: dict[str, Any], one: dict[str, Any]) -> None:
    """Two processes x 4 examples = one process x 8: the global batch, the logged loss and
    gradient norm of every step, the epoch reached and the final dev loss."""
    assert two["distributed"] == {
        "world_size": 2, "distributed_type": "MULTI_CPU", "backend": "gloo",
        "per_device_train_batch_size": 4, "train_batch_size_per_process": 4,
        "gradient_accumulation_steps": 1, "global_train_batch_size": 8,
    }
    assert one["distributed"]["world_size"] == 1
    assert one["distributed"]["global_train_batch_size"] == 8
    log2, log1 = two["train"]["log"], one["train"]["log"]
    assert [e["step"] for e in log2] == [e["step"] for e in log1] == list(range(1, 7))
    for key in ("loss", "grad_norm", "epoch", "learning_rate"):
        got = torch.tensor([e[key] for e in log2], dtype=torch.float64)
        expected = torch.tensor([e[key] for e in log1], dtype=torch.float64)
        torch.testing.assert_close(got, expected, rtol=LOSS_RTOL, atol=0,
                                   msg=lambda m, key=key: f"{key}: {m}")
    assert two["train"]["epoch"] == pytest.approx(one["train"]["epoch"]) == 1.5
    assert two["eval"]["loss"] == pytest.approx(one["eval"]["loss"], rel=LOSS_RTOL)


def _assert_same_weights(path2: Path, path1: Path, start: dict[str, torch.Tensor]) -> None:
    """Equal within WEIGHT_ATOL, and trained well beyond it."""
    two, one = load_file(path2), load_file(path1)
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=WEIGHT_ATOL, rtol=0,
                                   msg=lambda m, key=key: f"{key}: {m}")
    moved = max((one[k] - start[k]).abs().max().item() for k in one if k in start)
    assert moved > 50 * WEIGHT_ATOL


@pytest.fixture(scope="module")
def full_runs(settings, launch_env, tmp_path_factory):
    """Full fine-tuning: one process, and two with torchrun through the command line."""
    folder = tmp_path_factory.mktemp("full")
    one = _one_process(settings, folder / "one")
    output = _launch(_torchrun(*_cli({**settings, "per_device_train_batch_size": 4},
                                     folder / "two")), launch_env)
    return one, folder, output


def test_torchrun_full_fine_tuning_matches_one_process(full_runs, tiny_model_dir):
    one, folder, output = full_runs
    two = _record(folder / "two")
    _assert_same_run(two, one)
    assert output.count("results: ") == 1  # one summary: the other process stays quiet
    _assert_same_weights(folder / "two" / "model" / "model.safetensors",
                         folder / "one" / "model" / "model.safetensors",
                         load_file(Path(tiny_model_dir) / "model.safetensors"))


def test_accelerate_launch_lora_matches_one_process(settings, launch_env, tmp_path):
    lora = {**settings, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}}
    one = _one_process(lora, tmp_path / "one")
    _launch(_accelerate(*_cli({**lora, "per_device_train_batch_size": 4}, tmp_path / "two")),
            launch_env)
    _assert_same_run(_record(tmp_path / "two"), one)
    adapter = Path("adapter") / "adapter_model.safetensors"
    start = {k: torch.zeros_like(v) for k, v in load_file(tmp_path / "one" / adapter).items()
             if "lora_B" in k}  # B starts at zero
    _assert_same_weights(tmp_path / "two" / adapter, tmp_path / "one" / adapter, start)


def test_torchrun_freelb_matches_one_process(
    full_runs, settings, launch_env, tmp_path, tiny_model_dir
):
    freelb = {**settings, "adversarial": {"method": "freelb", "steps": 2, "alpha": 0.3}}
    one = _one_process(freelb, tmp_path / "one")
    _launch(_torchrun(*_cli({**freelb, "per_device_train_batch_size": 4}, tmp_path / "two")),
            launch_env)
    _assert_same_run(_record(tmp_path / "two"), one)
    plain = full_runs[0]["train"]["log"][0]["grad_norm"]  # the same step without FreeLB
    assert abs(one["train"]["log"][0]["grad_norm"] - plain) > 0.01
    _assert_same_weights(tmp_path / "two" / "model" / "model.safetensors",
                         tmp_path / "one" / "model" / "model.safetensors",
                         load_file(Path(tiny_model_dir) / "model.safetensors"))


def test_two_process_run_resumes_after_a_kill(full_runs, settings, launch_env):
    """Killed (SIGKILL, every process) right after checkpoint 2, resumed with --resume: the
    same losses and weights as the uninterrupted two-process run."""
    _, folder, _ = full_runs
    out = folder / "killed"
    run = {**settings, "per_device_train_batch_size": 4, "out": str(out)}
    _launch(_torchrun(str(ROOT / "tests" / "train_and_kill.py"), "2", json.dumps(run)),
            launch_env, expect_success=False)
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    assert not (out / "results.json").exists() and not (out / "model").exists()
    _launch(_torchrun(*_cli(run, out, "--resume")), launch_env)
    resumed, straight = _record(out), _record(folder / "two")
    assert resumed["train"]["resumed_from"].endswith("checkpoint-2")
    assert resumed["train"]["global_step"] == 6
    assert resumed["distributed"] == straight["distributed"]
    for key in ("loss", "grad_norm"):
        torch.testing.assert_close(
            torch.tensor([e[key] for e in resumed["train"]["log"]]),
            torch.tensor([e[key] for e in straight["train"]["log"]]), rtol=LOSS_RTOL, atol=0,
        )
    a = load_file(out / "model" / "model.safetensors")
    b = load_file(folder / "two" / "model" / "model.safetensors")
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=WEIGHT_ATOL, rtol=0,
                                   msg=lambda m, key=key: f"{key}: {m}")


def test_single_process_accelerate_cpu_launch_warns(settings, tmp_path, monkeypatch):
    """``accelerate launch --cpu --num_processes 2`` starts one process (MASTER_PORT set, no
    WORLD_SIZE): the run says so and records world_size 1."""
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    config = build_config({**settings, "max_steps": 1, "out": str(tmp_path)})
    with pytest.warns(UserWarning, match="single process"):
        record = train(config)
    assert record["distributed"]["world_size"] == 1
