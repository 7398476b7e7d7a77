"""Packed against padded scoring batches in the serving engine (BENCHMARKS.md, Serving).

SmolLM2 on the served prompt (SST-2 4-shot), in one process, alternating: the offline engine over
``--inputs`` distinct SST-2 pool (train) sentences in one call (sorted by length inside the
backend) and batches of 32 unsorted sentences as a server gathers them, packing on and off.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/serve_packing.py --inputs 640 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from lmboost.backends import load_backend
from lmboost.serving.config import ServedTask
from lmboost.serving.engine import TaskEngine
from lmboost.tasks import get_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--inputs", type=int, default=640)
    parser.add_argument("--batches", type=int, default=4, help="unsorted batches of 32 timed")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    pool = get_task("sst2").load_pool()
    texts = list(dict.fromkeys(e.fields["sentence"] for e in pool))[:args.inputs]
    backend = load_backend(args.model, device="cpu", batch_size=32)
    engine = TaskEngine(ServedTask(task="sst2", shots=4, calibrator="none"), backend,
                        Path(os.devnull), 10**9)
    engine.score(engine.examples(texts[:32]))  # the prefix cache and packing's first-use check

    def timed(inputs: list[str]) -> float:
        t0 = time.perf_counter()
        engine.score(engine.examples(inputs))
        return time.perf_counter() - t0

    for r in range(args.rounds):
        for mode in ("packed", "padded"):
            backend.packing = mode == "packed"
            tag = f" {r}{mode}"  # unseen texts: no answer from the engine's memo
            offline = len(texts) / timed([t + tag for t in texts])
            batch = sum(timed([t + tag + "!" for t in texts[i * 32:(i + 1) * 32]])
                        for i in range(args.batches)) / args.batches
            print(f"round {r} {mode}: offline {offline:.1f} examples/s; unsorted batch of 32 "
                  f"{batch * 1000:.0f} ms ({32 / batch:.1f} examples/s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
