"""Measuring ``lmboost serve`` under load: the offline engine it is held against, and the report
of ``benchmarks/serve.py`` (BENCHMARKS.md, Serving)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lmboost.backends import load_backend
from lmboost.evaluation.report import markdown_table
from lmboost.evaluation.speed import timed
from lmboost.serving.config import ServedTask
from lmboost.serving.engine import TaskEngine


async def load_test(url: str, texts: list[str], clients: int, task: str = "sst2",
                    kill_after: int | None = None, kill: Callable[[], object] | None = None,
                    ) -> dict:
    """``clients`` concurrent HTTP clients (httpx, a ``dev`` dependency) sending one text per
    ``/v1/classify`` request of ``task`` until all are sent: requests/s, latency percentiles of
    the answered ones (``ok``, status 200 with calibrated probabilities) and a count per status
    (a 200 without calibrated probabilities counts as ``"200 uncalibrated"``, a lost connection
    as ``"connection: <error>"``). After ``kill_after`` requests ``kill`` runs once."""
    import httpx

    queue, latencies, statuses, killed = list(reversed(texts)), [], {}, asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            text, t0 = queue.pop(), time.perf_counter()
            try:
                r = await http.post("/v1/classify", json={"task": task, "inputs": [text]})
                key = str(r.status_code)
                if r.status_code == 200:
                    if r.json()["predictions"][0]["calibrated"] is None:
                        key = "200 uncalibrated"
                    else:
                        latencies.append(time.perf_counter() - t0)
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


def offline_speed(model: str, texts: list[str], batch: int, task: str = "sst2",
                  shots: int = 4) -> dict:
    """The serving engine in this process on the served prompt: examples/s over ``texts`` in one
    call, and the time of one full batch of ``batch`` inputs unseen by its memo."""
    engine = TaskEngine(ServedTask(task=task, shots=shots, calibrator="none"),
                        load_backend(model, device="cpu", batch_size=batch), Path(os.devnull),
                        10**9)
    _, every = timed(engine.score, engine.examples(texts))
    _, one = timed(engine.score, engine.examples([t + " ." for t in texts[:batch]]))
    return {"inputs": len(texts), "seconds": every["seconds"],
            "examples_per_s": len(texts) / every["seconds"], "full_batch_inputs": batch,
            "full_batch_ms": one["seconds"] * 1000}


def load_test_report(r: dict) -> str:
    """Markdown of a load test record: the ``levels`` (one per concurrency), the ``offline``
    engine (:func:`offline_speed`) against the busiest level, the ``fault`` (SIGTERM under
    load) and the ``machine`` (:func:`lmboost.evaluation.records.machine_info`)."""
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
