"""RAIN vs vanilla decoding (Li et al., ICLR 2024): harmlessness, controlled sentiment and time.

Every policy (``--policies``) decodes the first ``--prompts`` of each prompt set (``--sets``:
``lmboost.tasks`` prompt sets, built-in names or files; each names its chat use and RAIN goal)
greedily with the KV cache, one prompt at a time, and with RAIN (the policy judging its own text
under its chat template); ``--check-unbatched N`` also decodes N prompts per set with
``batched=False`` and compares text and trace. The judge (``--judge``) scores every text and is
checked on ``--judge-sst2`` SST-2 dev reviews (``lmboost icl --limit``'s sample) and
``--judge-hh-pairs`` HH-RLHF pairs (``hh-pairs``): ``lmboost.decoding.outcomes``. Resumable under
``--results``: one ``run_generate`` folder per (policy, set, method, settings), one line of
``judgements.jsonl`` per judgement; ``summary.json``/``.md`` rewritten after each policy. Costs
and results: docs/rain-results.md; pull the Qwen models first (``lmboost models pull``). Smoke
test: ``--policies smollm2-135m-instruct --judge smollm2-135m-instruct --prompts 2
--max-new-tokens 6 --max-iterations 2 --judge-sst2 8 --judge-hh-pairs 4 --results /tmp/rain``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import torch

from lmboost.decoding import GOALS, RainConfig, SelfEvaluator, outcomes
from lmboost.decoding.outcomes import METHODS, UNBATCHED
from lmboost.errors import TaskError
from lmboost.evaluation.records import write_json, write_text
from lmboost.evaluation.store import ItemLog
from lmboost.generation import GenerationConfig, generate
from lmboost.generation.run import GenerateRunConfig, run_generate
from lmboost.icl import eval_sample  # the eval sample of `lmboost icl --limit`
from lmboost.models import CATALOG, load_model
from lmboost.tasks import get_prompt_set, get_task

PAPER = {  # the paper's anchors (Li et al., ICLR 2024)
    "harmless": [("LLaMA 30B, HH", "82% -> 97%"), ("7B models, HH", "about +5 points")],
    "time_ratio": [("LLaMA 30B", 4.36), ("LLaMA 65B", 3.95), ("LLaMA-2 70B", 3.78)],
}
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
    settings = {
        "vanilla": {"max_new_tokens": args.max_new_tokens, "decoding": "greedy"},
        "rain": {**dataclasses.asdict(rain), "calibrate": args.calibrate},
        UNBATCHED: {**dataclasses.asdict(dataclasses.replace(rain, batched=False)),
                    "calibrate": False},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    judgements = outcomes.Judgements(args.results / "judgements.jsonl", args.judge)
    sst2 = eval_sample(get_task("sst2").load_eval(), args.judge_sst2) if args.judge_sst2 else []
    pairs = get_prompt_set("hh-pairs").load(args.judge_hh_pairs)
    for policy in policies or [None]:
        if policy is not None:
            run_policy(policy, sets, items, settings, rain, args)
        records = generations(args.results, policies, sets, items, settings)
        outcomes.run_judge(judgements, records, sst2, pairs, device=args.device,
                           batch_size=args.judge_batch_size, log=say)
        summary = outcomes.summarise_outcomes(records, judgements, sst2, pairs)
        summary["settings"] = {
            "policies": policies, "judge": args.judge, "sets": list(items),
            "prompts_per_set": args.prompts, "vanilla": settings["vanilla"],
            "rain": settings["rain"], "judge_sst2": args.judge_sst2,
            "judge_hh_pairs": args.judge_hh_pairs,
        }
        summary["machine"] = {
            "platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu_name(),
            "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        }
        write_json(args.results / "summary.json", {**summary, "paper": PAPER})
        write_text(args.results / "summary.md", outcomes.outcome_report(
            summary, PAPER, CAVEAT.format(judge=args.judge)))
    print((args.results / "summary.md").read_text())
    return 0


def run_dir(results: Path, policy: str, name: str, method: str, settings: dict) -> Path:
    """The run_generate folder of one (policy, set, method, settings)."""
    tag = hashlib.sha1(json.dumps(settings[method], sort_keys=True).encode()).hexdigest()[:10]
    return results / "generations" / policy.replace("/", "--") / name / f"{method}-{tag}"


def run_policy(policy: str, sets: dict, items: dict, settings: dict, rain: RainConfig,
               args) -> None:
    """Every (set, method) run_generate folder with prompts left, the model loaded once; the
    unbatched search with self-judges of its own (no shared memo or BC estimate)."""
    todo = []
    for name, its in items.items():
        for method in (*METHODS, UNBATCHED):
            chosen = its[: args.check_unbatched] if method == UNBATCHED else its
            prompts = [item.prompt for item in chosen]
            folder = run_dir(args.results, policy, name, method, settings)
            done = ItemLog(folder / "items.jsonl", key="index").read()
            if any(i not in done for i in range(len(prompts))):
                todo.append((name, method, prompts, folder))
    if not todo:
        return
    say(f"== {policy}: {len(todo)} (set, method) runs to do")
    loaded = load_model(policy, device=args.device)
    goals = {s.goal for s in sets.values()}
    judges = {method: {g: SelfEvaluator(loaded, GOALS[g], chat=None, calibrate=calibrate)
                       for g in goals}
              for method, calibrate in (("rain", args.calibrate), (UNBATCHED, False))}
    generate(loaded, ["Hello"], GenerationConfig(max_new_tokens=2))  # warm-up, not timed
    for name, method, prompts, folder in todo:
        common = {"out": folder, "model": policy, "chat": sets[name].chat, "device": args.device}
        goal = sets[name].goal
        if method == "vanilla":
            config = GenerateRunConfig(**common, max_new_tokens=args.max_new_tokens, batch_size=1)
        else:
            search = rain if method == "rain" else dataclasses.replace(rain, batched=False)
            config = GenerateRunConfig(**common, rain=search, goal=goal, trace=True,
                                       calibrate=args.calibrate and method == "rain",
                                       progress=True)
        tag, n = f"{policy} {name} {method}", len(prompts)
        run_generate(config, prompts, loaded, evaluator=judges.get(method, {}).get(goal),
                     on_item=lambda r, tag=tag, n=n: say(
                         f"{tag} {r['index'] + 1}/{n}: {r['seconds']:.1f} s {r['text'][:70]!r}"))
    del loaded, judges
    gc.collect()


def generations(results: Path, policies, sets, items, settings) -> list[dict]:
    """The records of the current settings and items, tagged with policy, set, goal, method
    and uid."""
    records = []
    for policy in policies:
        for name, its in items.items():
            for method in (*METHODS, UNBATCHED):
                folder = run_dir(results, policy, name, method, settings)
                done = ItemLog(folder / "items.jsonl", key="index").read()
                records += [{**done[i], "policy": policy, "set": name, "goal": sets[name].goal,
                             "method": method, "uid": item.uid}
                            for i, item in enumerate(its)
                            if i in done and done[i]["prompt"] == item.prompt]
    return records


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
