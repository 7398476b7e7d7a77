"""``lmboost serve``: the real server, started as a process on a free local port with the tiny
model, called over HTTP (classify, generate, bad requests, auth, restart with state restored),
and the config checks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from lmboost.serving import ServeConfig, ServeConfigError, ServedTask, load_serve_config
from lmboost.serving.process import ServerProcess

REVIEWS = [
    ("a gripping and funny film", "pos"), ("dull and lifeless", "neg"),
    ("a warm and wise story", "pos"), ("a tedious mess", "neg"), ("great fun", "pos"),
    ("badly acted", "neg"), ("a lovely surprise", "pos"), ("boring and long", "neg"),
    ("smart and moving", "pos"), ("a waste of time", "neg"), ("charming work", "pos"),
    ("flat and stale", "neg"), ("a joy to watch", "pos"), ("painfully slow", "neg"),
    ("brilliant acting", "pos"), ("it never works", "neg"),
]


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    """A folder with a review task (CSV + task file) and a serve config for the tiny model."""
    return make_project(tmp_path, tiny_model_dir)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model_dir):
    """One server for the tests that do not restart it: (client, project folder)."""
    folder = make_project(tmp_path_factory.mktemp("serve"), tiny_model_dir)
    with running(folder) as (client, _):
        yield client, folder


def make_project(tmp_path, tiny_model_dir):
    with open(tmp_path / "reviews.csv", "w", encoding="utf-8") as f:
        f.write("text,label\n" + "".join(f"{t},{y}\n" for t, y in REVIEWS))
    (tmp_path / "reviews.yaml").write_text(
        "path: reviews.csv\ntemplate: \"Review: {text}\\nSentiment:\"\n"
        "label_words: {neg: negative, pos: positive}\npool_size: 12\n"
    )
    (tmp_path / "pairs.csv").write_text(
        "premise,hypothesis,label\n" + "".join(f"{t},{t},{y}\n" for t, y in REVIEWS)
    )
    (tmp_path / "pairs.yaml").write_text(
        "path: pairs.csv\ntemplate: \"{premise} / {hypothesis}?\"\n"
        "label_words: {neg: no, pos: yes}\npool_size: 8\n"
    )
    write_config(tmp_path, tiny_model_dir)
    return tmp_path


def write_config(folder, model, **extra) -> None:
    tasks = extra.pop("tasks", [
        {"task": "reviews.yaml", "shots": 2, "min_examples": 1},
        {"task": "pairs.yaml", "shots": 1, "calibrator": "none"},
    ])
    settings = {"model": model, "device": "cpu", "state_dir": "state", "save_every": 1000,
                "batch_wait_ms": 20, "max_inputs": 8, "max_input_chars": 200,
                "max_body_bytes": 4000, "tasks": tasks, **extra}
    (folder / "serve.yaml").write_text(json.dumps(settings))  # JSON is YAML


@contextlib.contextmanager
def running(folder, *flags: str, env: dict | None = None):
    """``lmboost serve --config serve.yaml`` in ``folder``; yields (client, process)."""
    with ServerProcess(folder, *flags, env={"OMP_NUM_THREADS": "1", **(env or {})}) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        yield client, server.process


def softmax(x):
    z = np.exp(x - x.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_classify_is_streaming_bc_over_the_traffic_and_survives_a_restart(project, tiny_model_dir):
    texts = ["great fun again", "so dull", "a fine film", "weak"]
    with running(project) as (client, proc):
        tasks = client.get("/v1/tasks").json()["tasks"]
        reviews = next(t for t in tasks if t["name"] == "reviews")
        assert reviews["labels"] == ["neg", "pos"] and reviews["fields"] == ["text"]
        answers = []
        for text in texts:  # one at a time: each request is its own batch
            r = client.post("/v1/classify", json={"task": "reviews", "inputs": [text]})
            assert r.status_code == 200, r.text
            answers.append(r.json()["predictions"][0])
        served = client.get("/v1/tasks").json()["tasks"][0]
        assert served["calibrator"]["n_seen"] == 4
        assert served["prefix"].count("Sentiment:") == 2  # the 2 demonstrations
    # SIGTERM: the estimate is saved on the way out.
    state = json.loads((project / "state" / "reviews.json").read_text())
    assert state["n_seen"] == 4

    # The served numbers are BC's streaming protocol on the model's own label scores.
    raw = np.array([[a["uncalibrated"]["neg"], a["uncalibrated"]["pos"]] for a in answers])
    logp = np.log(raw)
    np.testing.assert_allclose(logp.mean(0), state["mean"], atol=1e-6)
    for i, a in enumerate(answers):
        expected = softmax(logp[i : i + 1] - logp[: i + 1].mean(0))[0]
        np.testing.assert_allclose([a["calibrated"]["neg"], a["calibrated"]["pos"]], expected,
                                   atol=1e-6)
        assert a["label"] == ["neg", "pos"][int(np.argmax(expected))]
        assert a["calibrator"]["n_seen"] == i + 1
    # The uncalibrated probabilities are the model's own, after the task's prompt prefix.
    from lmboost.backends import load_backend

    backend = load_backend(tiny_model_dir, device="cpu")
    scores = backend.score_choices(
        [f"{served['prefix']}Review: {t}\nSentiment:" for t in texts], [" negative", " positive"]
    )
    np.testing.assert_allclose(raw, softmax(scores), atol=1e-5)

    # Restart: the estimate is restored and keeps counting.
    with running(project) as (client, _):
        r = client.post("/v1/classify", json={"task": "reviews", "inputs": ["nice"]})
        assert r.json()["predictions"][0]["calibrator"]["n_seen"] == 5
    # A different prompt (other shots) does not inherit it.
    config = json.loads((project / "serve.yaml").read_text())
    config["tasks"][0]["shots"] = 1
    (project / "serve.yaml").write_text(json.dumps(config))
    with running(project) as (client, _):
        r = client.post("/v1/classify", json={"task": "reviews", "inputs": ["nice"]})
        assert r.json()["predictions"][0]["calibrator"]["n_seen"] == 1
    assert (project / "state" / "reviews.json.old").is_file()


def test_concurrent_requests_share_batches_and_match_one_by_one(shared):
    texts = [f"review number {i}" for i in range(12)]
    client, _ = shared

    def ask(text):
        pair = {"premise": text, "hypothesis": "ok"}
        r = client.post("/v1/classify", json={"task": "pairs", "inputs": [pair]})
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]["uncalibrated"]

    def batches() -> tuple[float, float]:
        text = client.get("/metrics").text
        return tuple(_metric(text, f'lmboost_batch_inputs_{k}{{task="pairs"}}')
                     for k in ("count", "sum"))

    ask("warm-up")
    count, total = batches()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        together = list(pool.map(ask, texts))
    metrics = client.get("/metrics").text
    new_count, new_total = batches()
    assert new_total - total == 12 and new_count - count < 12  # some were scored together
    alone = [ask(t) for t in texts]
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5)
    assert 'lmboost_requests_total{endpoint="/v1/classify",status="200"}' in metrics


def _metric(text: str, name: str) -> float:
    line = next(li for li in text.splitlines() if li.startswith(name))
    return float(line.split()[-1])


def test_bad_requests_get_json_errors_that_say_what_to_change(shared):
    client, _ = shared

    def post(body, path="/v1/classify", **kw):
        r = client.post(path, json=body, **kw) if body is not None else client.post(path, **kw)
        assert r.headers["content-type"].startswith("application/json")
        return r.status_code, r.json().get("error", "")

    assert post({"task": "nope", "inputs": ["x"]}) == (
        404, "Unknown task 'nope'; served tasks: reviews, pairs (GET /v1/tasks).")
    code, msg = post({"task": "reviews", "inputs": []})
    assert code == 422 and "inputs" in msg
    code, msg = post({"task": "reviews", "inputs": ["x"] * 9})
    assert code == 422 and "send at most 8" in msg
    code, msg = post({"task": "reviews", "inputs": ["y" * 201]})
    assert code == 422 and "201 characters; the limit is 200" in msg
    code, msg = post({"task": "pairs", "inputs": ["just a string"]})
    assert code == 422 and "takes the fields ['premise', 'hypothesis']" in msg
    code, msg = post({"task": "pairs", "inputs": [{"premise": "a"}]})
    assert code == 422 and "missing ['hypothesis']" in msg
    code, msg = post({"task": "reviews", "inputs": [3]})
    assert code == 422 and "schema" in msg
    code, msg = post(None, content=b"{not json")
    assert code == 422
    code, msg = post({"task": "reviews", "inputs": ["z" * 150] * 30})
    assert code == 413 and "limit of 4000 bytes" in msg
    code, msg = post({"prompt": "hi", "max_new_tokens": 10_000}, "/v1/generate")
    assert code == 422 and "max_new_tokens 10000 is over" in msg
    code, msg = post({"prompt": "hi", "mode": "rain", "goal": "be nice"}, "/v1/generate")
    assert code == 422 and "Unknown goal" in msg
    # The server is unharmed: a good request still works.
    assert client.post("/v1/classify", json={"task": "reviews", "inputs": ["ok"]}).is_success


def test_api_key_guards_everything_but_health_and_the_page(project):
    with running(project, "--api-key-env", "TEST_SERVE_KEY",
                 env={"TEST_SERVE_KEY": "s3cret"}) as (client, _):
        body = {"task": "reviews", "inputs": ["ok"]}
        r = client.post("/v1/classify", json=body)
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
        assert client.post("/v1/classify", json=body,
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics").status_code == 401
        ok = client.post("/v1/classify", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200
        assert "<select id=\"task\">" in client.get("/").text
        assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


def test_missing_key_variable_refuses_to_start(project):
    proc = subprocess.run(
        [sys.executable, "-m", "lmboost.cli", "serve", "--config", "serve.yaml",
         "--api-key-env", "UNSET_SERVE_KEY_VAR"],
        cwd=project, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "UNSET_SERVE_KEY_VAR"},
    )
    assert proc.returncode == 2
    assert "UNSET_SERVE_KEY_VAR, which is unset or empty" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_generate_greedy_matches_the_backend_and_modes_run(shared, tiny_model_dir):
    from lmboost.backends import load_backend
    from lmboost.generation import GenerationConfig

    backend = load_backend(tiny_model_dir, device="cpu")
    (expected,) = backend.generate(["hello there"], GenerationConfig(max_new_tokens=6))
    client, _ = shared
    r = client.post("/v1/generate", json={"prompt": "hello there", "max_new_tokens": 6})
    assert r.status_code == 200 and r.json()["texts"] == expected
    body = {"prompt": "hello there", "mode": "self-consistency", "n": 3,
            "max_new_tokens": 5, "seed": 1, "answer": "text"}
    first, again = (client.post("/v1/generate", json=body).json() for _ in range(2))
    assert len(first["texts"]) == 3 and first == again  # seeded: repeatable
    assert first["vote"] in first["answers"]
    rain = client.post("/v1/generate", json={
        "prompt": "hello there", "mode": "rain", "max_new_tokens": 3, "max_iterations": 2,
        "goal": "positive", "seed": 0,
    })
    assert rain.status_code == 200, rain.text
    assert rain.json()["steps"] >= 1 and isinstance(rain.json()["texts"][0], str)


def test_config_file_errors_name_the_key(project, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: x\ntasks:\n  - task: sst2\n    shots: four\n")
    with pytest.raises(ServeConfigError, match=r"tasks\[0\]\.shots must be a whole number, not 'f"):
        load_serve_config(path)
    path.write_text("tasks: [sst2]\nprot: 80\n")
    with pytest.raises(ServeConfigError, match=r"unknown key 'prot'\. Did you mean port\? Allowed"):
        load_serve_config(path)
    path.write_text("tasks: [sst2]\nport: 80\nstate_dir: state\n")
    assert load_serve_config(path).state_dir == tmp_path / "state"  # relative to the file
    assert load_serve_config(path, state_dir="mine").state_dir == Path("mine")  # from the CWD
    path.write_text("tasks: []\n")
    with pytest.raises(ServeConfigError, match="at least one task"):
        load_serve_config(path)
    config = load_serve_config(project / "serve.yaml", port=9000)
    assert config.port == 9000 and config.tasks[0].name == "reviews"
    assert config.tasks[0].task == str(project / "reviews.yaml")
    with pytest.raises(ServeConfigError, match="calibrator 'pc' is not served online"):
        ServeConfig(tasks=[ServedTask(task="sst2", calibrator="pc")]).validate()
    with pytest.raises(ServeConfigError, match=r"served twice"):
        ServeConfig(tasks=[ServedTask(task="sst2"), ServedTask(task="sst2")]).validate()


def chromium():
    """A headless Chromium driven through Debian's chromedriver (skip where not installed:
    `apt-get install chromium chromium-driver`; CI installs them)."""
    import shutil

    from selenium import webdriver

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=900,800"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))


def test_page_shows_uncalibrated_and_bc_probabilities_in_a_real_browser(shared, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    client, _ = shared
    browser = chromium()
    try:
        browser.get(str(client.base_url))
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: len(Select(b.find_element(By.ID, "task")).options) == 2)
        Select(browser.find_element(By.ID, "task")).select_by_value("reviews")
        browser.find_element(By.ID, "field-text").send_keys("a gripping and funny film")
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda b: b.find_element(By.ID, "probs").is_displayed())
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in browser.find_elements(By.CSS_SELECTOR, "#probs tbody tr")]
        assert [r[0] for r in rows] == ["neg", "pos"]
        served = client.post("/v1/classify", json={"task": "reviews", "inputs": ["x"]})
        assert served.is_success
        for row in rows:  # both columns hold percentages
            assert all(cell.endswith("%") for cell in row[1:]), rows
        assert browser.find_element(By.ID, "answer").text.startswith("Label: ")
        assert "its estimate has seen" in browser.find_element(By.ID, "state").text
        assert browser.find_element(By.ID, "error").text == ""
        browser.find_element(By.ID, "field-text").clear()
        Select(browser.find_element(By.ID, "task")).select_by_value("pairs")
        assert browser.find_elements(By.ID, "field-hypothesis")  # one box per field
        shot = tmp_path / "page.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
    finally:
        browser.quit()


def test_server_process_reports_a_server_that_exits_with_its_log(project):
    write_config(project, "unused-model", tasks=[{"task": "missing.yaml"}])
    with pytest.raises(RuntimeError, match=r"the server exited \(\d+\)") as err:
        ServerProcess(project)
    assert "missing.yaml" in str(err.value)  # the end of server.log says what was wrong


def test_load_test_counts_every_answer_and_runs_its_fault_once(shared):
    from lmboost.serving.loadtest import load_test

    client, _ = shared
    client.post("/v1/classify", json={"task": "reviews", "inputs": ["warm-up"]})
    kills: list[int] = []
    texts = [f"a fine film, part {i}" for i in range(8)]
    record = asyncio.run(load_test(str(client.base_url), texts, clients=3, task="reviews",
                                   kill_after=3, kill=lambda: kills.append(1)))
    assert kills == [1]
    assert (record["requests"], record["ok"], record["statuses"]) == (8, 8, {"200": 8})
    assert record["server_errors_5xx"] == 0 and record["requests_per_s"] > 0
    assert record["p50_ms"] <= record["p95_ms"] <= record["p99_ms"]
