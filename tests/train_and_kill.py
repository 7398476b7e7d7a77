"""A script for ``torchrun``: train the recipe given as JSON and SIGKILL every process right after
the checkpoint of step N is saved, as a crash would (used by test_training_distributed.py).

    torchrun --standalone --nproc_per_node 2 tests/train_and_kill.py N '{"recipe": ...}'
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import torch.distributed as dist
from transformers import TrainerCallback

from lmboost.training import build_config, run_training


class KillAfterSave(TrainerCallback):
    """Kills this process once the checkpoint of ``step`` is on disk in every process."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            if dist.is_initialized():
                dist.barrier()  # every process has written its part of the checkpoint
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    step, settings = int(argv[0]), json.loads(argv[1])
    run_training(build_config(settings), callbacks=[KillAfterSave(step)])
    return 0  # not reached unless training ended before step N


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
