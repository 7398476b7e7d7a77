"""Serve calibrated classification and aligned generation over HTTP (docs/serving.md).

One model answers every task of the config. POST /v1/classify returns each input's label with
its probabilities uncalibrated and calibrated: Batch Calibration's estimate of the label bias is
updated by the traffic itself (no labels, no extra forward passes), saved to --state-dir every
--save-every inputs and on shutdown, and restored at start-up. POST /v1/generate decodes
greedily, samples, votes over samples (self-consistency) or runs RAIN. GET /v1/tasks, /health,
/metrics (Prometheus), /docs (the OpenAPI page) and / (a page to try a task) are there too.
The server listens on 127.0.0.1 unless --host says otherwise; with --api-key-env NAME every
request must send `Authorization: Bearer <the value of NAME>`.

examples:
  lmboost serve --task sst2                           # SST-2, 4-shot, BC, on 127.0.0.1:8000
  curl -s localhost:8000/v1/classify -H 'Content-Type: application/json' \\
      -d '{"task": "sst2", "inputs": ["a gripping, funny film"]}'
  lmboost serve --task sst2 --task agnews --warm-start 32 --port 8080
  lmboost serve --config serve.yaml                   # tasks, calibrators and limits from YAML
  LMBOOST_KEY=s3cret lmboost serve --task sst2 --api-key-env LMBOOST_KEY --host 0.0.0.0
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lmboost.cli.options import add_backend, add_device, add_dtype, add_trust_remote_code
from lmboost.models import DEFAULT_MODEL
from lmboost.serving import ONLINE_CALIBRATORS, ServeConfig, ServedTask, load_serve_config, serve

NAME = "serve"
HELP = "HTTP service: calibrated classification (BC online) and generation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` flags; with --config, those given override the file's settings."""
    parser.add_argument("--config", type=Path, metavar="YAML", help="serve config (see docs)")
    parser.add_argument(
        "--task", action="append", metavar="NAME",
        help="a task to serve (registered name or task file); repeat for several",
    )
    parser.add_argument("--model", default=None, help=f"model spec ({DEFAULT_MODEL})")
    parser.add_argument("--shots", type=int, default=4, help="demonstrations per --task (4)")
    parser.add_argument(
        "--calibrator", default="bc", choices=ONLINE_CALIBRATORS, help="per --task (bc)"
    )
    parser.add_argument(
        "--warm-start", type=int, default=0, metavar="N",
        help="per --task: unlabelled pool inputs scored at start-up to begin BC's estimate (0)",
    )
    parser.add_argument("--host", default=None, help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="(8000)")
    parser.add_argument("--api-key-env", default=None, metavar="NAME",
                        help="environment variable holding the bearer token requests must send")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="where calibrator state is kept (serve-state)")
    parser.add_argument("--save-every", type=int, default=None, metavar="N",
                        help="save a task's state after N new inputs (100)")
    add_dtype(parser)
    add_device(parser)
    add_backend(parser)
    add_trust_remote_code(parser)
    # Unset unless given, so that a --config file's backend, dtype and device are not replaced
    # by the flags' defaults; without --config, ServeConfig's defaults (the same) apply.
    parser.set_defaults(backend=None, dtype=None, device=None)


def run(args: argparse.Namespace) -> int:
    """Build the config from --config and/or the flags, then serve until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    overrides = {
        "model": args.model, "host": args.host, "port": args.port,
        "api_key_env": args.api_key_env, "state_dir": args.state_dir,
        "save_every": args.save_every, "backend": args.backend, "device": args.device,
        "dtype": args.dtype, "trust_remote_code": args.trust_remote_code or None,
    }
    if args.config is not None:
        config = load_serve_config(args.config, **overrides)
    else:
        config = ServeConfig(**{k: v for k, v in overrides.items() if v is not None})
    if args.task:
        config.tasks = [
            ServedTask(task=t, shots=args.shots, calibrator=args.calibrator,
                       warm_start=args.warm_start)
            for t in args.task
        ]
    config.validate()
    serve(config)
    return 0
