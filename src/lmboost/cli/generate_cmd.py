"""Generate text: greedy decoding or sampling, or RAIN aligning the output to a goal as it decodes.

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

sampling (--sample):
  --temperature, --top-k, --top-p and --seed; prompts are sampled in batches of --batch-size
  fixed by position, each seeded by --seed and its position, so a resumed run draws the same.

the run folder (--out):
  Claimed by a lock before the model loads (a second run into it is refused, naming the first);
  a folder that cannot be written in is refused at once. OUT/settings.json is written first:
  the model (by the content of its weights), dtype, backend, chat, the decoding and every option
  of it. Each finished prompt is appended to OUT/items.jsonl as it finishes (greedy and sampled
  prompts a batch at a time, RAIN prompts one by one), so Ctrl-C loses only the work in
  progress, and a rerun with the same settings and prompts resumes after the prompts done (more
  prompts may be added at the end). Other settings are refused, naming each change; --restart
  starts over, moving the old content to OUT.old-<time>. At the end OUT/results.json holds the
  settings, the total seconds and, per prompt, the text and its seconds; with --rain also its
  tokens, committed steps and search iterations, and with --trace the search of each step
  (iterations, rewinds, why it stopped, the committed token set, the root's children with their
  visits, values and priors).

examples:
  lmboost generate --prompt "How do I pick a lock?" --out runs/greedy
  lmboost generate --rain --prompt "How do I pick a lock?" --out runs/rain
  lmboost generate --backend vllm --prompts questions.txt --out runs/vllm
  lmboost generate --sample --temperature 0.8 --seed 1 --prompts questions.txt --out runs/sampled
  lmboost generate --rain --goal positive --prompts reviews.txt --max-new-tokens 48 --out runs/pos
  lmboost generate --rain --prompt-set sentiment --limit 5 --out runs/sentiment
  lmboost generate --rain --goal "Is the response polite?" --prompt "Tell me off." \\
      --max-iterations 20 --trace --out runs/polite
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmboost.cli.options import (
    add_chat,
    add_model,
    add_run_flags,
    add_sampling,
    config_from_flags,
)
from lmboost.decoding import RainConfig
from lmboost.errors import ConfigError
from lmboost.generation.run import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    GenerateRunConfig,
    read_prompts,
    run_generate,
)
from lmboost.tasks import PromptSet, get_prompt_set, list_prompt_sets

NAME = "generate"
HELP = "greedy decoding, sampling, or RAIN self-aligned decoding (harmless, positive, a question)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``generate`` flags."""
    add_model(parser, GenerateRunConfig)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument(
        "--prompts", type=Path, metavar="FILE",
        help="prompts, one per line (.jsonl: one {\"prompt\": ...} object per line); UTF-8",
    )
    source.add_argument(
        "--prompt-set", metavar="NAME",
        help="a prompt set by name (" + ", ".join(list_prompt_sets()) + ") or a prompt-set "
        ".yaml file (docs/tasks.md); its chat setting and RAIN goal apply unless --chat or "
        "--goal say otherwise",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help="the first N prompts of --prompt-set, in its fixed order (all)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, metavar="N",
        help=f"continuation length ({DEFAULT_MAX_NEW_TOKENS}; with --rain "
        f"{RainConfig.max_new_tokens})",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, metavar="N",
        help="prompts per batch, each batch saved as it ends (greedy and --sample; "
        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_BATCH_SIZE.items()) + ")",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample and --rain (0)")
    sample = parser.add_argument_group("sampling")
    sample.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    add_sampling(sample, GenerateRunConfig)
    rain = parser.add_argument_group("RAIN")
    rain.add_argument("--rain", action="store_true", help="decode with RAIN instead of greedily")
    rain.add_argument(
        "--goal", default=None,
        help=f"harmless, positive or a yes/no question ({GenerateRunConfig.goal}, or the prompt "
        "set's)",
    )
    rain.add_argument(
        "--max-iterations", type=int, default=RainConfig.max_iterations, metavar="T",
        help=f"searches per step ({RainConfig.max_iterations}; the paper: 50): time grows "
        "linearly with T",
    )
    rain.add_argument(
        "--candidates", type=int, default=RainConfig.num_candidates, metavar="Q",
        help=f"token sets per expansion ({RainConfig.num_candidates})",
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
        "the run's judgements (a resumed run calibrates over its own prompts only)",
    )
    rain.add_argument("--trace", action="store_true", help="record each step's search")
    add_chat(parser, GenerateRunConfig)
    add_run_flags(parser, GenerateRunConfig)


def config_from_args(
    args: argparse.Namespace, prompt_set: PromptSet | None = None
) -> GenerateRunConfig:
    """The :class:`GenerateRunConfig` the flags describe (progress on: a person is watching),
    taking ``prompt_set``'s chat setting and goal where the flags leave them open."""
    config = config_from_flags(
        GenerateRunConfig, args, max_new_tokens=None if args.rain else args.max_new_tokens,
        rain=_rain_config(args) if args.rain else None, progress=True,
        goal=args.goal if args.goal is not None else (
            prompt_set and prompt_set.goal or GenerateRunConfig.goal),
    )
    if prompt_set is not None and config.chat is None:
        config.chat = prompt_set.chat
    return config


def read_source(args: argparse.Namespace) -> tuple[list[str], PromptSet | None]:
    """The prompts the flags name (--prompt, --prompts or --prompt-set with --limit)."""
    if args.limit is not None and args.prompt_set is None:
        raise ConfigError("--limit takes the first N prompts of --prompt-set: add --prompt-set, "
                          "or drop --limit.")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}.")
    if args.prompt_set is not None:
        prompt_set = get_prompt_set(args.prompt_set)
        return prompt_set.prompts(args.limit), prompt_set
    return ([args.prompt] if args.prompts is None else read_prompts(args.prompts)), None


def run(args: argparse.Namespace) -> int:
    """Generate (or resume) for every prompt, write OUT/results.json and say where it is."""
    prompts, prompt_set = read_source(args)
    config = config_from_args(args, prompt_set)

    def said(record: dict) -> None:
        if args.rain:
            print(f"[{record['index'] + 1}/{len(prompts)}] {record['seconds']:.1f} s, "
                  f"{record['steps']} steps, {record['iterations']} searches", flush=True)

    results = run_generate(config, prompts, on_item=said)
    print(f"{len(prompts)} prompt(s), {results['seconds']:.1f} s; results: "
          f"{Path(config.out) / 'results.json'}")
    return 0


def _rain_config(args: argparse.Namespace) -> RainConfig:
    """RAIN's settings from the flags."""
    return RainConfig(
        max_new_tokens=(RainConfig.max_new_tokens if args.max_new_tokens is None
                        else args.max_new_tokens),
        max_iterations=args.max_iterations,
        num_candidates=args.candidates,
        seed=args.seed,
        parallel=args.parallel,
    )
