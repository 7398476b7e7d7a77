"""Build a Flan-style instruction-tuning mixture: templated classification tasks plus
chain-of-thought data, with whole task groups held out for zero-shot evaluation.

A mixture YAML file (recipes/mixture-flan-cot.yaml) lists the sources and the mixing settings:

  sources: [sst2, trec, rte, cot:gsm8k, ...]   # `lmboost instruct sources` lists them
  size: 2000                 # records in the mixture
  cap: 1000                  # most examples drawn from one source; caps: {boolq: 32} per source
  rates: {cot:gsm8k: 0.1}    # optional fractions; the rest share by capped size
  held_out: [nli]            # groups left out entirely (their tasks stay unseen)
  templates_per_example: 1   # distinct templates per drawn example
  few_shot_k: 2              # solved examples before a few-shot prompt
  few_shot_fraction: 0.25    # share of few-shot renderings
  options_fraction: 0.5      # share of prompts with an "OPTIONS:\\n- a\\n- b" block
  seed: 0                    # same seed, same file

`build` writes OUT/mixture.jsonl (one {"prompt", "completion", "source", "template", "format",
"uid"} object per line; train on it with `lmboost train sft`) and OUT/stats.json (examples per
source, group, template and format; what was held out; the settings).

examples:
  lmboost instruct sources
  lmboost instruct build --config recipes/mixture-flan-cot.yaml --out runs/mix-cot
  lmboost instruct build --config recipes/mixture-flan-cot.yaml --held-out nli,commonsense \\
      --seed 1 --size 500 --cap 200 --cap cot:gsm8k=50 --out runs/mix-small
  lmboost train sft --recipe recipes/sft-mixture.yaml --data runs/mix-cot/mixture.jsonl \\
      --out runs/sft-cot
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lmboost.cli.options import add_out
from lmboost.instruct.sources import HELD_OUT_GROUPS

NAME = "instruct"
HELP = "build a Flan-style instruction mixture (tasks + chain-of-thought), groups held out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``instruct`` actions: ``sources`` and ``build``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("sources", help="every source with its kind and held-out group")
    build = sub.add_parser(
        "build", help="sample and render a mixture: OUT/mixture.jsonl + OUT/stats.json",
        description="Build the mixture a YAML config describes (its keys: `lmboost instruct "
        "--help`); the flags override them. Writes OUT/mixture.jsonl and OUT/stats.json.",
    )
    build.add_argument("--config", required=True, type=Path, metavar="FILE",
                       help="mixture YAML (recipes/mixture-flan-cot.yaml)")
    build.add_argument("--seed", type=int, help="seed of every random choice")
    build.add_argument("--size", type=int, metavar="N", help="records in the mixture")
    build.add_argument("--cap", action="append", default=[], metavar="N|SOURCE=N",
                       help="cap on examples per source: N for all, SOURCE=N for one "
                       "(repeatable)")
    build.add_argument("--held-out", metavar="GROUPS",
                       help="comma-separated groups to leave out, replacing the config's "
                       f"('none' for none): {', '.join(HELD_OUT_GROUPS)}")
    add_out(build)


def run(args: argparse.Namespace) -> int:
    """List the sources, or build and write the mixture and print its make-up."""
    if args.action == "sources":
        return _sources()
    from lmboost.evaluation.store import check_out
    from lmboost.instruct import build_mixture, load_mixture_config, write_mixture

    config = load_mixture_config(args.config, _overrides(args))
    check_out(args.out)  # a file, or a folder it cannot write in: said before the build
    records = build_mixture(config)
    stats = write_mixture(records, args.out, config)
    _print_stats(stats, args.out)
    return 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as mixture config keys."""
    from lmboost.instruct import MixtureError

    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.size is not None:
        overrides["size"] = args.size
    caps: dict[str, int] = {}
    for item in args.cap:
        name, sep, value = item.rpartition("=")
        try:
            number = int(value)
        except ValueError:
            raise MixtureError(f"--cap expects N or SOURCE=N, got {item!r}.") from None
        if sep:
            caps[name.strip()] = number
        else:
            overrides["cap"] = number
    if caps:
        overrides["caps"] = caps
    if args.held_out is not None:
        groups = [g.strip() for g in args.held_out.split(",") if g.strip()]
        overrides["held_out"] = [] if groups == ["none"] else groups
    return overrides


def _sources() -> int:
    from lmboost.instruct import get_source, group_of, list_sources

    rows = [("source", "kind", "group", "templates", "data")]
    for name in list_sources():
        source = get_source(name)
        rows.append((name, source.kind, group_of(name), str(len(source.templates)),
                     source.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[4]]).rstrip())
    return 0


def _print_stats(stats: dict[str, Any], out: Path) -> None:
    held = stats["held_out"]
    print(f"{stats['n']} records from {len(stats['per_source'])} sources"
          + (f" (held out {', '.join(held['groups'])}: {', '.join(held['sources']) or 'none'})"
             if held["groups"] else ""))
    if stats["size_requested"] is not None and stats["n"] < stats["size_requested"]:
        print(f"  fewer than the {stats['size_requested']} asked: the capped sources ran out")
    for name, count in stats["per_source"].items():
        print(f"  {name:<22} {count:6d}  {100 * stats['share_per_source'][name]:5.1f}%")
    formats = ", ".join(f"{k} {v}" for k, v in stats["per_format"].items())
    print(f"formats: {formats}")
    print(f"mixture: {out / 'mixture.jsonl'}\nstats: {out / 'stats.json'}")
