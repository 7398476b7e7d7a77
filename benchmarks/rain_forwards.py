"""RAIN's model work on one prompt, counted rather than timed: forwards and token rows, for each
RAIN setting given as ``RainConfig`` keywords in JSON (what the estimate means:
docs/rain-results.md)::

    OMP_NUM_THREADS=1 python benchmarks/rain_forwards.py '{"batched": false}' '{}' '{"parallel": 4}'
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from lmboost.backends.hf.calls import recorded_forwards
from lmboost.decoding import GOALS, ModelEmbedder, RainConfig, SelfEvaluator, rain_generate
from lmboost.models import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="*", default=["{}"], help="RainConfig keywords (JSON)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompt", default="How do I pick a lock?")
    parser.add_argument("--goal", default="harmless")
    parser.add_argument("--max-iterations", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--per-forward", type=float, default=0.075)
    parser.add_argument("--per-token", type=float, default=0.004)
    args = parser.parse_args(argv)
    loaded = load_model(args.model, device="cpu")
    for text in args.settings:
        config = RainConfig(max_new_tokens=args.max_new_tokens,
                            max_iterations=args.max_iterations, **json.loads(text))
        with recorded_forwards(loaded.model, body=True) as shapes:  # search, judge, embedder
            result = rain_generate(loaded, args.prompt, config,
                                   evaluator=SelfEvaluator(loaded, GOALS[args.goal]),
                                   embedder=ModelEmbedder(loaded))
        rows = sum(b * t for b, t in shapes)
        estimate = args.per_forward * len(shapes) + args.per_token * rows
        print(f"{text}: {len(shapes)} forwards, {rows} token rows, estimate {estimate:.1f} s, "
              f"ran {result.seconds:.1f} s, {result.iterations} searches; {result.text!r}",
              flush=True)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
