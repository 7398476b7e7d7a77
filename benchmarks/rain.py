"""RAIN vs vanilla decoding (Li et al., ICLR 2024): harmlessness, controlled sentiment and time.

Policies over prompt sets, greedy and with RAIN (``lmboost.decoding.outcomes.Comparison``), judged
by ``--judge``; resumable under ``--results``. What it does, costs, results and a smoke command:
docs/rain-results.md.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from lmboost.decoding import GOALS, RainConfig, outcomes
from lmboost.errors import TaskError
from lmboost.evaluation.records import machine_info, write_json, write_text
from lmboost.icl import eval_sample  # the eval sample of `lmboost icl --limit`
from lmboost.models import CATALOG
from lmboost.tasks import get_prompt_set, get_task

say = functools.partial(print, flush=True)
CAVEAT = (
    "Read with care: a handful of prompts per set (one prompt moves a rate by 100/n points), a "
    "shortened search (T and length above; the paper's are T = 50 and 128 new tokens), policies "
    "of 0.1-0.5B parameters judging themselves, and {judge} as the judge, while the paper's "
    "anchors come from 7B-70B LLaMA models and a far stronger evaluator."
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", default="smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct")
    p.add_argument("--judge", default="qwen2.5-coder-1.5b-instruct", help="the judge model")
    p.add_argument("--sets", default="sentiment,hh,advbench", help="comma list of prompt sets")
    p.add_argument("--prompts", type=int, default=6, help="prompts per set (6)")
    p.add_argument("--max-new-tokens", type=int, default=24, help="(24)")
    p.add_argument("--max-iterations", type=int, default=10, help="RAIN's T (10)")
    p.add_argument("--parallel", type=int, default=1, help="RAIN searches per round (1)")
    p.add_argument("--calibrate", action="store_true", help="BC on RAIN's self-evaluation")
    p.add_argument("--check-unbatched", type=int, default=0, metavar="N",
                   help="also decode the first N prompts per set unbatched and compare (0)")
    p.add_argument("--judge-sst2", type=int, default=100, help="SST-2 dev reviews (100)")
    p.add_argument("--judge-hh-pairs", type=int, default=24, help="HH-RLHF pairs (24)")
    p.add_argument("--judge-batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/rain"))
    args = p.parse_args(argv)
    policies = [m for m in args.policies.split(",") if m]
    missing = [m for m in [*policies, args.judge] if m in CATALOG and not CATALOG[m].installed()]
    if missing:
        print("Not installed: " + ", ".join(missing) + ". Run "
              + "; ".join(f"lmboost models pull {m}" for m in dict.fromkeys(missing)) + ".",
              file=sys.stderr)
        return 2
    if args.check_unbatched and (args.calibrate or args.parallel > 1):
        p.error("--check-unbatched compares the paper's order, uncalibrated: drop --calibrate "
                "and --parallel")
    try:
        sets = {s.name: s for s in map(get_prompt_set, filter(None, args.sets.split(",")))}
    except TaskError as err:
        p.error(str(err))
    if aimless := [name for name, s in sets.items() if s.goal not in GOALS]:
        p.error(f"prompt set(s) {aimless} name no RAIN goal (`goal:` one of {', '.join(GOALS)})")
    items = {name: s.load(args.prompts) for name, s in sets.items()}
    rain = RainConfig(max_new_tokens=args.max_new_tokens, max_iterations=args.max_iterations,
                      parallel=args.parallel)
    rain.validate()
    runs = outcomes.Comparison(args.results, sets, items, rain, args.calibrate,
                               args.check_unbatched)
    args.results.mkdir(parents=True, exist_ok=True)
    judgements = outcomes.Judgements(args.results / "judgements.jsonl", args.judge)
    sst2 = eval_sample(get_task("sst2").load_eval(), args.judge_sst2) if args.judge_sst2 else []
    pairs = get_prompt_set("hh-pairs").load(args.judge_hh_pairs)
    for policy in policies or [None]:
        if policy is not None:
            runs.decode(policy, args.device, log=say)
        records = runs.records(policies)
        outcomes.run_judge(judgements, records, sst2, pairs, device=args.device,
                           batch_size=args.judge_batch_size, log=say)
        summary = outcomes.summarise_outcomes(records, judgements, sst2, pairs)
        summary["settings"] = {
            "policies": policies, "judge": args.judge, "sets": list(items),
            "prompts_per_set": args.prompts, "vanilla": runs.settings()["vanilla"],
            "rain": runs.settings()["rain"], "judge_sst2": args.judge_sst2,
            "judge_hh_pairs": args.judge_hh_pairs,
        }
        summary["machine"] = machine_info()
        write_json(args.results / "summary.json", {**summary, "paper": outcomes.PAPER})
        write_text(args.results / "summary.md", outcomes.outcome_report(
            summary, outcomes.PAPER, CAVEAT.format(judge=args.judge)))
    print((args.results / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
