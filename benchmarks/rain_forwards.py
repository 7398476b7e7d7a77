"""RAIN's model work on one prompt, counted rather than timed: forwards and token rows.

On a CPU one forward of a few rows costs about what one row does (the weights are read once per
forward), and a forward of many tokens costs about per token; so a search's time is close to
``a * forwards + b * token rows``, whatever else the machine runs. This counts both (a hook on
the model's body sees every forward: the search's, the judge's, the embedder's) for RAIN
settings given as ``RainConfig`` keyword dicts, one line each, with the seconds the run took::

    OMP_NUM_THREADS=1 python benchmarks/rain_forwards.py --max-iterations 10 \\
        --max-new-tokens 24 '{"batched": false}' '{}' '{"parallel": 4}'

The estimate uses ``--per-forward`` and ``--per-token`` seconds (defaults: 0.075 s and 0.004 s,
fitted to SmolLM2-135M on one thread of the 2-core AMD EPYC of docs/rain-results.md).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

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
    shapes: list[tuple[int, int]] = []
    loaded.model.get_decoder().register_forward_pre_hook(
        lambda module, a, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    for text in args.settings:
        options = json.loads(text)
        config = RainConfig(max_new_tokens=args.max_new_tokens,
                            max_iterations=args.max_iterations, **options)
        shapes.clear()
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
