"""WEAT and SEAT association tests: how strongly a model links target concepts to attributes.

Each test compares two target sets X, Y (e.g. flowers, insects) with two attribute sets A, B
(e.g. pleasant, unpleasant) through cosine similarities of the model's text vectors. The effect
size d is in standard deviations (d > 0: X is closer to A and Y to B); the p-value is a one-sided
permutation test, exact when the partitions number at most --permutations, else sampled.
Writes OUT/results.json and OUT/report.md with a plot of the effect sizes.

tests ($LMBOOST_DATA/seat; all = every one of them):
  weat1 .. weat10, weat3b, ...   word lists of Caliskan et al. (2017)
  sent-weat1 .. sent-weat10, ... the same concepts in template sentences (SEAT)
  angry_black_woman_stereotype, heilman_double_bind_competent_one_word, ... (May et al. 2019)
  or the path of a .jsonl file in the same format

pooling (the last hidden layer to one vector per text):
  mean   average over the text's tokens (default; for sentence encoders the pooling
         sentence-transformers uses)
  first  the [CLS] vector (sentence encoders only)
  last   the final token's state (causal LMs only)

examples:
  lmboost bias --model minilm-l6-v2 --tests weat1,sent-weat1 --out runs/bias-minilm
  lmboost bias --model minilm-l6-v2 --out runs/bias-minilm-all        # every test
  lmboost bias --model smollm2-135m-instruct --tests sent-weat6,sent-weat7 --pooling last \\
      --out runs/bias-smollm2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.bias import POOLINGS, BiasConfig, run_bias, summary_table
from lmboost.cli.options import add_model, add_run_flags, config_from_flags

NAME = "bias"
HELP = "WEAT/SEAT social-bias association tests (effect sizes, p-values)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bias`` flags; test names are validated in :func:`run`, with the valid list."""
    add_model(parser, BiasConfig, help="model spec: a sentence encoder or a causal LM")
    parser.add_argument(
        "--tests", default="all", metavar="LIST", help="comma list of test names, or all (all)"
    )
    parser.add_argument("--pooling", default="mean", choices=POOLINGS, help="(mean)")
    parser.add_argument(
        "--permutations", type=int, default=100_000, metavar="N",
        help="p-value: exact up to N partitions, else N sampled ones (100000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of sampled partitions (0)")
    parser.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="texts encoded at once (32)"
    )
    add_run_flags(parser, BiasConfig)


def config_from_args(args: argparse.Namespace) -> BiasConfig:
    """The :class:`~lmboost.bias.BiasConfig` the flags describe."""
    return config_from_flags(BiasConfig, args, tests=args.tests.split(","))


def run(args: argparse.Namespace) -> int:
    """Run the tests, print the table and where the report is."""
    config = config_from_args(args)
    results = run_bias(config)
    print(f"\n{config.model}, {config.pooling} pooling: effect sizes (* p < "
          f"{results['significance']})")
    print(summary_table(results))
    print(f"\nreport: {Path(config.out) / 'report.md'}")
    print(f"results: {Path(config.out) / 'results.json'}")
    return 0
