"""Prune and/or quantize a model and measure what it costs.

Measures the model before and after (parameters, sparsity, weight size, forward throughput,
WikiText-2 perplexity, optionally SST-2 4-shot accuracy), saves the compressed model to
OUT/model and writes OUT/results.json and OUT/report.md (with OUT/sweep.png for --sweep).

pruning (--prune METHOD:AMOUNT):
  magnitude:0.5   zero the 50% smallest |W| of each decoder Linear (--scope global: pooled)
  wanda:0.5       zero the 50% smallest |W|*||X|| of each output row (Wanda) *
  sparsegpt:0.5   SparseGPT: prune and update the kept weights to compensate *
  sparsegpt:2:4   2 of every 4 consecutive weights (also wanda:2:4): the pattern GPUs speed up *
  neurons:0.25    remove 25% of the MLP neurons (least L2 norm): a really smaller model
  neurons-act:0.25  the same by activation-aware importance (far less damage without
                  retraining than the weight norm)

quantization (--quantize):
  w8a8                  SmoothQuant + GPTQ: int8 weights and int8 activations *
  w4a16                 GPTQ int4 weights (groups of 128, smaller where widths need it) *
  int8-dynamic          torch.ao dynamic int8 (CPU, float32)
  int8-weight           int8 weights, dequantized on the fly
  int8-dynamic-torchao  torchao dynamic int8 (pip install torchao)

* through llm-compressor (pip install 'lmboost[compress]'); the model is saved in the
  compressed-tensors format that vLLM serves (lmboost generate --backend vllm --model OUT/model).
Methods that read activations are calibrated on --calib-samples windows of WikiText-2
validation text (or --calib-text).

examples:
  lmboost compress --prune sparsegpt:0.5 --out runs/sparsegpt50
  lmboost compress --quantize w8a8 --icl --out runs/w8a8
  lmboost compress --prune sparsegpt:2:4 --quantize w4a16 --out runs/sparse-int4
  lmboost compress --prune neurons-act:0.25 --recover-steps 100 --out runs/neurons-lora
  lmboost compress --prune neurons:0.25 --quantize int8-weight --out runs/small
  lmboost compress --sweep magnitude,wanda:0.1,0.3,0.5 --ppl-tokens 2048 --out runs/sweep
  lmboost compress --model ./my-model --quantize int8-dynamic --icl --out runs/int8
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.cli.options import add_model, add_run_flags, config_from_flags
from lmboost.compression import ONESHOT_SCHEMES, QUANTIZERS
from lmboost.compression.magnitude import SCOPES
from lmboost.compression.runner import CompressConfig, run_compression, summary_table

NAME = "compress"
HELP = "prune (SparseGPT, Wanda, 2:4, MLP neurons) and quantize (W8A8, int4), cost measured"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compress`` flags; specs are validated in :func:`run`, with clear messages."""
    add_model(parser, CompressConfig)
    parser.add_argument("--prune", metavar="METHOD:AMOUNT", help="e.g. magnitude:0.5")
    parser.add_argument(
        "--scope", default="layer", choices=SCOPES, help="magnitude pruning per layer or global"
    )
    parser.add_argument(
        "--quantize", metavar="SCHEME", help=", ".join([*ONESHOT_SCHEMES, *QUANTIZERS])
    )
    parser.add_argument(
        "--sweep", metavar="METHODS:AMOUNTS",
        help="perplexity at each amount, e.g. magnitude,wanda:0.1,0.3,0.5",
    )
    ppl = parser.add_argument_group("perplexity")
    ppl.add_argument("--ppl-tokens", type=int, default=4096, metavar="N",
                     help="tokens of the text to score (4096)")
    ppl.add_argument("--ppl-window", type=int, default=512, metavar="N", help="window (512)")
    ppl.add_argument("--ppl-stride", type=int, default=256, metavar="N", help="stride (256)")
    ppl.add_argument("--ppl-text", type=Path, metavar="FILE",
                     help="text file (default: WikiText-2 test, raw)")
    calib = parser.add_argument_group("calibration (wanda, sparsegpt, w8a8, w4a16, neurons-act)")
    calib.add_argument("--calib-text", type=Path, metavar="FILE",
                       help="text file (default: WikiText-2 validation)")
    calib.add_argument("--calib-samples", type=int, default=16, metavar="N",
                       help="random windows (16)")
    calib.add_argument("--calib-len", type=int, default=256, metavar="N",
                       help="tokens per window (256)")
    recover = parser.add_argument_group("recovery after pruning")
    recover.add_argument(
        "--recover-steps", type=int, default=0, metavar="N",
        help="after neurons/neurons-act pruning: train LoRA on the calibration text for N "
             "steps and merge it (0: none)",
    )
    recover.add_argument("--recover-lr", type=float, default=CompressConfig.recover_lr,
                         metavar="LR", help="its peak learning rate (%(default)g)")
    icl = parser.add_argument_group("in-context learning (slow)")
    icl.add_argument("--icl", action="store_true",
                     help="also measure SST-2 4-shot accuracy, uncalibrated and BC")
    icl.add_argument("--icl-limit", type=int, default=200, metavar="N",
                     help="eval examples (200)")
    icl.add_argument("--icl-seeds", type=int, default=3, metavar="N", help="seeds (3)")
    add_run_flags(parser, CompressConfig)


def config_from_args(args: argparse.Namespace) -> CompressConfig:
    """The :class:`~lmboost.compression.runner.CompressConfig` the flags describe."""
    return config_from_flags(CompressConfig, args)


def run(args: argparse.Namespace) -> int:
    """Run the experiment, print the before/after table and where the report is."""
    config = config_from_args(args)
    results = run_compression(config)
    steps = " + ".join(s for s in (config.prune, config.quantize) if s) or "sweep only"
    print(f"\n{config.model}: {steps}")
    print(summary_table(results))
    print(f"\nreport: {Path(config.out) / 'report.md'}")
    print(f"results: {Path(config.out) / 'results.json'}")
    print(f"model: {Path(config.out) / 'model'}")
    return 0
