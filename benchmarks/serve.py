"""Load and fault test of ``lmboost serve``: SST-2 4-shot with BC on one model, over real HTTP.

Per concurrency in ``--clients``: requests/s and p50/p95/p99 latency of one-input classify
requests (distinct SST-2 sentences); then SIGTERM under load (no 5xx, no lost BC update, state
restored) and the offline engine on the same prompt. Targets (issue #19): throughput >= 80% of
offline, p99 <= 2x one full batch. Writes ``--results``/results.json and summary.md.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/serve.py --requests 2000 --clients 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from lmboost.backends import load_backend
from lmboost.config import data_dir
from lmboost.evaluation.records import machine_info, write_json, write_text
from lmboost.evaluation.report import markdown_table
from lmboost.evaluation.speed import timed
from lmboost.serving import ServedTask
from lmboost.serving.engine import TaskEngine
from lmboost.serving.process import ServerProcess


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
    top, n = max(levels), args.requests
    seen: dict[str, None] = {}  # distinct SST-2 sentences: test, dev, then train
    for split in ("test", "dev", "train"):
        for line in (data_dir() / "sst2" / f"stsa.binary.{split}").read_text().splitlines():
            if line.strip():
                seen.setdefault(line[2:].strip(), None)
    sentences = list(seen)
    if len(sentences) < n * (len(levels) + 1):
        raise SystemExit(f"only {len(sentences)} distinct sentences for {n * (len(levels) + 1)}")
    folder, state = args.results, args.results / "state"
    state.mkdir(parents=True, exist_ok=True)
    for f in state.glob("*"):
        f.unlink()
    (folder / "serve.yaml").write_text(json.dumps({
        "model": args.model, "device": "cpu", "state_dir": str(state.resolve()),
        "max_batch": top, "batch_wait_ms": args.batch_wait_ms, "save_every": 100,
        "tasks": [{"task": "sst2", "shots": 4, "calibrator": "bc", "warm_start": args.warm_start}],
    }))
    record: dict = {"model": args.model, "requests_per_level": n, "max_batch": top,
                    "batch_wait_ms": args.batch_wait_ms, "levels": []}
    server, answered = ServerProcess(folder), args.warm_start
    for i, clients in enumerate(levels):
        record["levels"].append(asyncio.run(load(server.url, sentences[i * n:][:n], clients)))
        answered += record["levels"][-1]["ok"]
        print(json.dumps(record["levels"][-1]), flush=True)
    last = sentences[len(levels) * n:(len(levels) + 1) * n]
    fault = asyncio.run(load(server.url, last, top, kill_after=n // 3, kill=server.stop))
    answered += fault["ok"]
    saved = json.loads((state / "sst2.json").read_text())["n_seen"]
    with ServerProcess(folder) as server:
        tasks = httpx.get(f"{server.url}/v1/tasks").json()["tasks"]
    record["fault"] = {**fault, "answered_inputs_incl_warm_start": answered, "saved_n_seen": saved,
                       "restored_n_seen": tasks[0]["calibrator"]["n_seen"],
                       "lost_updates": answered - saved}
    print(json.dumps(record["fault"]), flush=True)
    record["offline"] = offline(args.model, last, top)
    print(json.dumps(record["offline"]), flush=True)
    record["machine"] = machine_info()
    write_json(folder / "results.json", record)
    write_text(folder / "summary.md", text := render(record))
    print(text)
    return 0


async def load(url: str, texts: list[str], clients: int, kill_after: int | None = None,
               kill=None) -> dict:
    """``clients`` concurrent clients sending one text per request until all are sent."""
    queue, latencies, statuses, killed = list(reversed(texts)), [], {}, asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            text, t0 = queue.pop(), time.perf_counter()
            try:
                r = await http.post("/v1/classify", json={"task": "sst2", "inputs": [text]})
                key = str(r.status_code)
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                    assert r.json()["predictions"][0]["calibrated"] is not None
            except httpx.TransportError as err:
                key = f"connection: {type(err).__name__}"
            statuses[key] = statuses.get(key, 0) + 1
            if sum(statuses.values()) == kill_after and not killed.is_set():
                killed.set()
                await asyncio.get_running_loop().run_in_executor(None, kill)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - t0
    ok, lat = statuses.get("200", 0), np.array(latencies) * 1000
    return {"clients": clients, "requests": len(texts), "seconds": seconds, "ok": ok,
            "requests_per_s": ok / seconds, "statuses": statuses,
            **{f"p{q}_ms": float(np.percentile(lat, q)) if ok else None for q in (50, 95, 99)},
            "server_errors_5xx": sum(k for s, k in statuses.items() if s.startswith("5"))}


def offline(model: str, texts: list[str], batch: int) -> dict:
    """The serving engine in this process on the same prompt: examples/s over ``texts`` in one
    call, and the time of one full batch of inputs unseen by its memo."""
    engine = TaskEngine(ServedTask(task="sst2", shots=4, calibrator="none"),
                        load_backend(model, device="cpu", batch_size=batch), Path(os.devnull),
                        10**9)
    _, every = timed(engine.score, engine.examples(texts))
    _, one = timed(engine.score, engine.examples([t + " ." for t in texts[:batch]]))
    return {"inputs": len(texts), "seconds": every["seconds"],
            "examples_per_s": len(texts) / every["seconds"], "full_batch_inputs": batch,
            "full_batch_ms": one["seconds"] * 1000}


def render(r: dict) -> str:
    off, f, m = r["offline"], r["fault"], r["machine"]
    top = max(r["levels"], key=lambda lv: lv["clients"])
    table = markdown_table(
        [[lv["clients"], lv["requests"], lv["requests_per_s"], lv["p50_ms"], lv["p95_ms"],
          lv["p99_ms"], lv["server_errors_5xx"],
          lv["requests"] - lv["ok"] - lv["server_errors_5xx"]] for lv in r["levels"]],
        ["clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "5xx", "other errors"],
        {"req/s": ".1f", "p50 ms": ".0f", "p95 ms": ".0f", "p99 ms": ".0f"},
    )
    return "\n".join([
        f"# lmboost serve under load ({r['model']}, SST-2 4-shot, BC)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in m['load_average'])}.", "",
        table,
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
    ]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
