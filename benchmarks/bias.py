"""SEAT/WEAT effect sizes of the packaged models, beside published ones.

Every SEAT test through ``run_bias`` per ``MODEL:POOLING`` in ``--runs`` (resumable), reported
by :mod:`lmboost.bias.comparison`; method and tables: docs/bias-results.md.

    .venv/bin/python benchmarks/bias.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmboost.bias import BiasConfig, run_bias
from lmboost.bias.comparison import comparison_report, comparison_summary
from lmboost.evaluation.records import read_json, write_json, write_text

RUNS = "minilm-l6-v2:mean,smollm2-135m-instruct:mean,smollm2-135m-instruct:last,gemma3-270m:mean"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default=RUNS, help="comma list of MODEL:POOLING")
    parser.add_argument("--tests", default="all")
    parser.add_argument("--permutations", type=int, default=100_000)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/bias"))
    args = parser.parse_args(argv)

    results = {}
    for run in args.runs.split(","):
        model, _, pooling = run.partition(":")
        out = args.results / f"{model}-{pooling or 'mean'}"
        if not (out / "results.json").exists():
            print(f"== {run}", flush=True)
            run_bias(BiasConfig(model=model, pooling=pooling or "mean", out=out,
                                tests=args.tests.split(","), permutations=args.permutations))
        results[run] = read_json(out / "results.json")
    write_json(args.results / "summary.json", comparison_summary(results))
    write_text(args.results / "summary.md", text := comparison_report(results))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
