"""Flags several commands share, declared once so their spelling and help stay the same."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.models.loading import DTYPES

CHAT = {"auto": None, "on": True, "off": False}


def add_chat(parser: argparse.ArgumentParser) -> None:
    """``--chat auto|on|off``; read it back with ``CHAT[args.chat]``."""
    parser.add_argument(
        "--chat", default="auto", choices=list(CHAT),
        help="chat template: auto = when the tokenizer has one (auto)",
    )


def add_dtype(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` of the model's weights."""
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help="(float32)")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device`` to run on ("auto": CUDA when available)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ... (auto)")


def add_out(parser: argparse.ArgumentParser) -> None:
    """The required ``--out DIR`` run folder."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
