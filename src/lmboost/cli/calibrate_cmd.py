"""Calibrate stored scores without a model, and write results.json and report.md as lmboost icl
does.

SOURCE is either the folder of an lmboost icl run (its scores/ and results.json), or the
per-sample log of an lm-evaluation-harness run of a multiple-choice task: the
samples_<task>_<date>.jsonl file that lm_eval --log_samples writes (or the --output_path folder
holding it). A log holds only the test documents' scores, so none, pc and bc apply directly;
bcl and linc also need --labelled, a second log of labelled documents scored with the same
prompt; cc, dc, hidden, knn, pmi and gc need model outputs a log does not have. A run folder
holds the outputs of the methods its lmboost icl run ran; other methods that need more (hidden,
knn, pmi, gc) are refused with the fix: rerun lmboost icl with them.

examples:
  lmboost calibrate runs/sst2 --calibration none,bc,linc      # rewrites runs/sst2's report
  lmboost calibrate runs/sst2 --calibration none,pc --out runs/sst2-pc
  lm_eval --model hf --model_args pretrained=gpt2 --tasks sst2 --log_samples --output_path lm-out
  lmboost calibrate lm-out --calibration none,bc,pc --out runs/sst2-lm-eval
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.cli.icl_cmd import name_list, print_summary
from lmboost.errors import ConfigError, InputFileError
from lmboost.icl.posthoc import calibrate_lm_eval, calibrate_run, is_run_folder

NAME = "calibrate"
HELP = "calibrate stored scores (an icl run, an lm-eval log) without a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, help="lmboost icl run folder, or lm-eval samples_*.jsonl (or folder)"
    )
    parser.add_argument(
        "--calibration", default="none,bc", metavar="LIST",
        help="comma list of methods (none,bc); see lmboost icl --help",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR",
        help="output folder (default for a run folder: the run folder; required for a log)",
    )
    parser.add_argument(
        "--labelled", type=Path, metavar="FILE",
        help="lm-eval log of labelled documents, for bcl and linc (logs only)",
    )


def run(args: argparse.Namespace) -> int:
    """Calibrate, print the accuracy table and where the report is."""
    methods = name_list(args.calibration, "--calibration")
    source: Path = args.source
    if not source.exists():
        raise InputFileError(f"{source} does not exist: give a run folder or an lm-eval log.")
    if is_run_folder(source):
        if args.labelled is not None:
            raise ConfigError(
                "--labelled is for lm-eval logs; a run folder has its own labelled set "
                "(lmboost icl --labelled-size)."
            )
        results = calibrate_run(source, methods, args.out)
    else:
        if args.out is None:
            raise ConfigError(
                f"{source} is an lm-eval log: give --out DIR for results.json and report.md."
            )
        results = calibrate_lm_eval(source, methods, args.out, labelled=args.labelled)
    print_summary(results)
    return 0
