"""Load and fault test of ``lmboost serve``: SST-2 4-shot with BC on one model, over real HTTP.

Per concurrency in ``--clients``, one-input classify requests of distinct SST-2 sentences; then
SIGTERM under load and the offline engine (:mod:`lmboost.serving.loadtest`); BENCHMARKS.md, Serving.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/serve.py --requests 2000 --clients 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import httpx

from lmboost.config import data_dir
from lmboost.evaluation.records import machine_info, read_json, write_json, write_text
from lmboost.serving.loadtest import load_test, load_test_report, offline_speed
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
        record["levels"].append(asyncio.run(load_test(server.url, sentences[i * n:][:n], clients)))
        answered += record["levels"][-1]["ok"]
        print(json.dumps(record["levels"][-1]), flush=True)
    last = sentences[len(levels) * n:(len(levels) + 1) * n]
    fault = asyncio.run(load_test(server.url, last, top, kill_after=n // 3, kill=server.stop))
    answered += fault["ok"]
    saved = read_json(state / "sst2.json")["n_seen"]
    with ServerProcess(folder) as server:
        tasks = httpx.get(f"{server.url}/v1/tasks").json()["tasks"]
    record["fault"] = {**fault, "answered_inputs_incl_warm_start": answered, "saved_n_seen": saved,
                       "restored_n_seen": tasks[0]["calibrator"]["n_seen"],
                       "lost_updates": answered - saved}
    print(json.dumps(record["fault"]), flush=True)
    record["offline"] = offline_speed(args.model, last, top)
    print(json.dumps(record["offline"]), flush=True)
    record["machine"] = machine_info()
    write_json(folder / "results.json", record)
    write_text(folder / "summary.md", text := load_test_report(record))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
