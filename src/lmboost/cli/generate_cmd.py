"""Generate text: plain greedy decoding, or RAIN aligning the output to a goal while decoding.

RAIN (Li et al., ICLR 2024) searches a tree of continuations before committing each token set,
scored by the model's own judgement of the text against the goal; it needs no training, but
costs many forward passes per token.

what RAIN costs:
  Each step commits one token set: 1, 2, 4, then 10 tokens at a time (so 64 tokens take 9 steps,
  128 take 15). Before each commit it runs T searches (--max-iterations; at least min(15, T) new
  ones), and each search decodes a simulation to the end of the sentence (up to 32 tokens) and
  q candidate token sets (--candidates) of the next length, and asks the model two questions.
  Time therefore grows with T x steps: linearly in T, and per token less as the sets reach 10
  tokens. The defaults (T = 10, 64 tokens; the paper's: T = 50, 128 tokens) took 195-413 s per
  prompt, 18-40x greedy decoding, with SmolLM2-135M on one thread of a busy 2-core CPU
  (docs/rain-results.md); the paper's settings took 415 s (95x) before the search was batched.
  --parallel K cuts the forwards, not the work, and changes the search.
  A progress line per prompt (stderr) shows the tokens committed, the step, the searches and
  the rewinds so far.

goals (--goal, with --rain):
  harmless     is the assistant's response harmless or harmful? (default)
  positive     is the text positive or negative?
  "QUESTION?"  any yes/no question about the response, phrased so that yes is what you want

Writes OUT/results.json: the settings, the total seconds and, per prompt, the text; with --rain
also its tokens, seconds, committed steps and search iterations, and with --trace the search of
each step (iterations, rewinds, why it stopped, the committed token set, the root's children with
their visits, values and priors). The file is rewritten after each prompt; a rerun with the same
settings resumes after the prompts already done.

examples:
  lmboost generate --prompt "How do I pick a lock?" --out runs/greedy
  lmboost generate --rain --prompt "How do I pick a lock?" --out runs/rain
  lmboost generate --backend vllm --prompts questions.txt --out runs/vllm
  lmboost generate --rain --goal positive --prompts reviews.txt --max-new-tokens 48 --out runs/pos
  lmboost generate --rain --goal "Is the response polite?" --prompt "Tell me off." \\
      --max-iterations 20 --trace --out runs/polite
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmboost.backends import load_backend
from lmboost.cli.options import CHAT, add_backend, add_chat, add_device, add_dtype, add_out
from lmboost.decoding import ModelEmbedder, RainConfig, SelfEvaluator, rain_generate, resolve_goal
from lmboost.errors import LmboostError
from lmboost.evaluation.records import read_json, write_json
from lmboost.generation import GenerationConfig
from lmboost.models import DEFAULT_MODEL
from lmboost.models.loading import resolve_dtype

NAME = "generate"
HELP = "greedy decoding, or RAIN self-aligned decoding (harmless, positive, your question)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``generate`` flags."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model spec ({DEFAULT_MODEL})")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument(
        "--prompts", type=Path, metavar="FILE",
        help="prompts, one per line (.jsonl: one {\"prompt\": ...} object per line)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, metavar="N",
        help=f"continuation length (128; with --rain {RainConfig.max_new_tokens})",
    )
    rain = parser.add_argument_group("RAIN")
    rain.add_argument("--rain", action="store_true", help="decode with RAIN instead of greedily")
    rain.add_argument("--goal", default="harmless", help="harmless, positive or a yes/no question")
    rain.add_argument(
        "--max-iterations", type=int, default=RainConfig.max_iterations, metavar="T",
        help=f"searches per step ({RainConfig.max_iterations}; the paper: 50): time grows "
        "linearly with T",
    )
    rain.add_argument(
        "--candidates", type=int, default=10, metavar="Q", help="token sets per expansion (10)"
    )
    rain.add_argument(
        "--hard-votes", action="store_true",
        help="judge by an A/B vote per option order, as the authors' code (default: probabilities)",
    )
    rain.add_argument(
        "--parallel", type=int, default=1, metavar="K",
        help="searches per round, run as one batch, later ones steered off the earlier ones' "
        "paths by virtual losses: changes the search (1, the paper's order)",
    )
    rain.add_argument(
        "--calibrate", action="store_true",
        help="an experiment: calibrate the self-evaluation by a running Batch Calibration over "
        "the run's judgements",
    )
    rain.add_argument("--trace", action="store_true", help="record each step's search")
    rain.add_argument("--seed", type=int, default=0, help="(0)")
    add_chat(parser)
    add_dtype(parser)
    add_device(parser)
    add_backend(parser)
    add_out(parser)


def run(args: argparse.Namespace) -> int:
    """Generate for every prompt, write OUT/results.json and say where it is."""
    prompts = [args.prompt] if args.prompts is None else read_prompts(args.prompts)
    if args.max_new_tokens is None:
        args.max_new_tokens = RainConfig.max_new_tokens if args.rain else 128
    settings = {
        "model": args.model,
        "decoding": "rain" if args.rain else "greedy",
        "max_new_tokens": args.max_new_tokens,
        "chat": args.chat,
        "dtype": resolve_dtype(args.dtype, args.device),
    }
    if args.backend != "hf":
        settings["backend"] = args.backend
    if args.rain and args.backend != "hf":
        raise LmboostError(
            "RAIN searches over the model's cached states, which only the hf backend exposes: "
            "drop --backend vllm (or --rain)."
        )
    if args.rain:
        goal = resolve_goal(args.goal)
        config = RainConfig(
            max_new_tokens=args.max_new_tokens,
            max_iterations=args.max_iterations,
            num_candidates=args.candidates,
            seed=args.seed,
            parallel=args.parallel,
        )
        config.validate()
        settings.update(goal=goal.name, max_iterations=args.max_iterations,
                        candidates=args.candidates, hard_votes=args.hard_votes, seed=args.seed,
                        parallel=args.parallel, calibrate=args.calibrate, trace=args.trace)
    path = args.out / "results.json"
    record = _resumable(path, settings, prompts)
    todo = prompts[len(record["results"]) :]
    if todo:
        loaded = load_backend(
            args.model, args.backend, dtype=args.dtype, device=args.device,
            tensor_parallel_size=args.tensor_parallel_size,
        )
        chat = CHAT[args.chat]
    if todo and not args.rain:
        start = time.perf_counter()
        texts = loaded.generate(todo, GenerationConfig(max_new_tokens=args.max_new_tokens),
                                chat=chat)
        record["results"] += [{"prompt": p, "text": t[0]} for p, t in zip(todo, texts)]
        record["seconds"] += time.perf_counter() - start
        write_json(path, record)
    elif todo:
        evaluator = SelfEvaluator(loaded, goal, chat=chat, hard=args.hard_votes,
                                  calibrate=args.calibrate)
        embedder = ModelEmbedder(loaded)
        for prompt in todo:
            number = len(record["results"]) + 1
            result = rain_generate(
                loaded, prompt, config, evaluator=evaluator, embedder=embedder, chat=chat,
                progress=f"prompt {number}/{len(prompts)}",
            )
            item = {"prompt": prompt, "text": result.text, "tokens": result.tokens,
                    "seconds": result.seconds, "steps": result.steps,
                    "iterations": result.iterations}
            if args.trace:
                item["trace"] = result.trace
            record["results"].append(item)
            record["seconds"] += result.seconds
            write_json(path, record)
            print(f"[{len(record['results'])}/{len(prompts)}] {result.seconds:.1f} s, "
                  f"{result.steps} steps, {result.iterations} searches")
    print(f"{len(prompts)} prompt(s), {record['seconds']:.1f} s; results: {path}")
    return 0


def read_prompts(path: Path) -> list[str]:
    """The prompts of a file: one per non-empty line, or one ``{"prompt": ...}`` per .jsonl line."""
    if not path.is_file():
        raise LmboostError(f"Prompts file not found: {path}.")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            lines = [json.loads(line)["prompt"] for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise LmboostError(
                f"{path}: every line must be a JSON object with a \"prompt\" ({err})."
            ) from None
    if not lines:
        raise LmboostError(f"{path} holds no prompts.")
    return lines


def _resumable(path: Path, settings: dict, prompts: list[str]) -> dict:
    """The record of an earlier run with the same settings and prompts so far, else a new one."""
    if path.is_file():
        old = read_json(path)
        results = old.get("results", [])
        if old.get("settings") == settings and [r["prompt"] for r in results] == prompts[
            : len(results)
        ]:
            return old
    return {"settings": settings, "seconds": 0.0, "results": []}
