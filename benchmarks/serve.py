"""Load and fault test of ``lmboost serve``: SST-2 4-shot with BC on one model, over real HTTP.

1. Start the server (``--model``, task sst2, 4 shots, BC warm-started on ``--warm-start`` pool
   inputs, ``max_batch`` = the largest concurrency) on a free localhost port.
2. For each concurrency in ``--clients``: that many clients each send one-input
   ``/v1/classify`` requests back to back until ``--requests`` are answered; requests/s,
   p50/p95/p99 latency and errors (5xx apart). Every input is a distinct SST-2 sentence
   (test, dev, then train), so no answer comes from the scorer's memory.
3. Fault: the same load at the largest concurrency; after a third of the requests the server
   gets SIGTERM. Every request must succeed or fail cleanly (a refused connection or a 4xx/503,
   never a 5xx from a crash); the saved BC state must hold exactly the inputs answered (warm
   start + every 200), and a restarted server must report that count.
4. The offline engine in this process, on the same model and prompt: the last level's inputs
   scored in one call (examples/s), and the time of one full batch (``max_batch`` inputs).

Targets (issue #19): throughput at the largest concurrency >= 80% of the offline engine's;
p99 latency <= 2x one full batch; no 5xx and no lost state.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/serve.py --requests 2000 --clients 1,8,32

Writes ``--results`` (benchmarks/results/serve)/results.json and summary.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lmboost.config import data_dir
from lmboost.evaluation.records import write_json, write_text
from lmboost.evaluation.report import markdown_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--warm-start", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/serve"))
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    top = max(levels)
    sentences = load_sentences()
    need = args.requests * (len(levels) + 1)
    if len(sentences) < need:
        raise SystemExit(f"only {len(sentences)} distinct sentences for {need} requests")
    folder = args.results
    folder.mkdir(parents=True, exist_ok=True)
    state_dir = folder / "state"
    for f in state_dir.glob("*"):
        f.unlink()
    config = {
        "model": args.model, "device": "cpu", "state_dir": str(state_dir.resolve()),
        "max_batch": top, "batch_wait_ms": args.batch_wait_ms, "save_every": 100,
        "tasks": [{"task": "sst2", "shots": 4, "calibrator": "bc",
                   "warm_start": args.warm_start}],
    }
    (folder / "serve.yaml").write_text(json.dumps(config))
    record: dict = {
        "machine": machine(), "model": args.model, "requests_per_level": args.requests,
        "max_batch": top, "batch_wait_ms": args.batch_wait_ms, "levels": [],
    }

    server = Server(folder)
    answered = args.warm_start
    start = 0
    for clients in levels:
        texts = sentences[start : start + args.requests]
        start += args.requests
        result = asyncio.run(load(server.url, texts, clients))
        answered += result.pop("ok_inputs")
        record["levels"].append({"clients": clients, **result})
        print(json.dumps(record["levels"][-1]), flush=True)

    # Fault: SIGTERM under load, then restart.
    texts = sentences[start : start + args.requests]
    last = texts
    result = asyncio.run(load(server.url, texts, top, kill_after=args.requests // 3,
                              kill=server.stop))
    answered += result.pop("ok_inputs")
    saved = json.loads((state_dir / "sst2.json").read_text())["n_seen"]
    server = Server(folder)
    import httpx

    restored = httpx.get(f"{server.url}/v1/tasks").json()["tasks"][0]["calibrator"]["n_seen"]
    server.stop()
    record["fault"] = {**result, "answered_inputs_incl_warm_start": answered,
                       "saved_n_seen": saved, "restored_n_seen": restored,
                       "lost_updates": answered - saved}
    print(json.dumps(record["fault"]), flush=True)

    record["offline"] = offline(args.model, last, top, args.warm_start)
    print(json.dumps(record["offline"]), flush=True)
    write_json(folder / "results.json", record)
    text = render(record)
    write_text(folder / "summary.md", text)
    print(text)
    return 0


def load_sentences() -> list[str]:
    """Distinct SST-2 sentences: test, dev, then train."""
    seen: dict[str, None] = {}
    for split in ("test", "dev", "train"):
        for line in (data_dir() / "sst2" / f"stsa.binary.{split}").read_text().splitlines():
            if line.strip():
                seen.setdefault(line[2:].strip(), None)
    return list(seen)


class Server:
    """``lmboost serve --config serve.yaml`` as a child process on a free port."""

    def __init__(self, folder: Path) -> None:
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(folder / "server.log", "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmboost.cli", "serve", "--config", "serve.yaml",
             "--port", str(port)],
            cwd=folder, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited; see {folder / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start in 300 s")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        self.log.close()


async def load(url: str, texts: list[str], clients: int, kill_after: int | None = None,
               kill=None) -> dict:
    """``clients`` concurrent clients sending one text per request until all are sent."""
    import httpx

    queue = list(reversed(texts))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    done = 0
    killed = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal done
        while queue:
            text = queue.pop()
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/classify", json={"task": "sst2", "inputs": [text]})
                key = str(r.status_code)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                    assert r.json()["predictions"][0]["calibrated"] is not None
            except httpx.TransportError as err:
                key = f"connection: {type(err).__name__}"
            statuses[key] = statuses.get(key, 0) + 1
            done += 1
            if kill_after is not None and done == kill_after and not killed.is_set():
                killed.set()
                await asyncio.get_running_loop().run_in_executor(None, kill)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - t0
    ok = statuses.get("200", 0)
    lat = np.array(latencies) * 1000
    return {
        "clients": clients, "requests": len(texts), "seconds": seconds,
        "ok": ok, "requests_per_s": ok / seconds,
        "p50_ms": float(np.percentile(lat, 50)) if ok else None,
        "p95_ms": float(np.percentile(lat, 95)) if ok else None,
        "p99_ms": float(np.percentile(lat, 99)) if ok else None,
        "statuses": statuses,
        "server_errors_5xx": sum(n for k, n in statuses.items() if k.startswith("5")),
        "ok_inputs": ok,
    }


def offline(model: str, texts: list[str], batch: int, warm_start: int) -> dict:
    """The offline engine on the same prompt: examples/s over ``texts`` in one call, and the
    time of one full batch."""
    from lmboost.backends import load_backend
    from lmboost.serving import ServedTask
    from lmboost.serving.engine import TaskEngine

    backend = load_backend(model, device="cpu", batch_size=batch)
    engine = TaskEngine(ServedTask(task="sst2", shots=4, calibrator="none"), backend,
                        Path(os.devnull), 10**9)
    examples = engine.examples(texts)
    t0 = time.perf_counter()
    engine.score(examples)
    seconds = time.perf_counter() - t0
    probe = engine.examples([t + " ." for t in texts[:batch]])  # unseen by the memo
    t1 = time.perf_counter()
    engine.score(probe)
    one_batch = time.perf_counter() - t1
    return {"inputs": len(texts), "seconds": seconds, "examples_per_s": len(texts) / seconds,
            "full_batch_inputs": batch, "full_batch_ms": one_batch * 1000}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "torch_threads": os.environ.get("OMP_NUM_THREADS", "default")}


def render(r: dict) -> str:
    off = r["offline"]
    top = max(r["levels"], key=lambda lv: lv["clients"])
    lines = [
        f"# lmboost serve under load ({r['model']}, SST-2 4-shot, BC)", "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores; load average at "
        f"the end {', '.join(f'{x:.1f}' for x in r['machine']['load_average'])}.", "",
    ]
    rows = [[lv["clients"], lv["requests"], lv["requests_per_s"], lv["p50_ms"], lv["p95_ms"],
             lv["p99_ms"], lv["server_errors_5xx"],
             lv["requests"] - lv["ok"] - lv["server_errors_5xx"]] for lv in r["levels"]]
    lines.append(markdown_table(
        rows, ["clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "5xx",
               "other errors"],
        {"req/s": ".1f", "p50 ms": ".0f", "p95 ms": ".0f", "p99 ms": ".0f"},
    ))
    f = r["fault"]
    lines += [
        "", f"Offline engine, same prompt and inputs: {off['examples_per_s']:.1f} examples/s; "
        f"one full batch of {off['full_batch_inputs']}: {off['full_batch_ms']:.0f} ms.",
        f"Served at {top['clients']} clients / offline: "
        f"**{top['requests_per_s'] / off['examples_per_s']:.0%}** (target >= 80%); "
        f"p99 / full batch: **{top['p99_ms'] / off['full_batch_ms']:.2f}x** (target <= 2x).",
        "", f"Fault (SIGTERM after {f['requests'] // 3} of {f['requests']} requests at "
        f"{f['clients']} clients): statuses {f['statuses']}; 5xx {f['server_errors_5xx']}; "
        f"inputs answered (with warm start) {f['answered_inputs_incl_warm_start']}, BC state "
        f"saved {f['saved_n_seen']}, restored {f['restored_n_seen']}: lost updates "
        f"{f['lost_updates']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
