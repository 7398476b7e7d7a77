"""What every built-in task and reasoning family produces, as a small JSON-able summary.

``tests/data/task_snapshot.json`` holds this summary as the code before "tasks as data" (issue
23) produced it; ``test_task_snapshot.py`` compares the current code against it. Regenerate it
only when a change of examples or prompts is intended:

    LMBOOST_DATA=shared/data PYTHONPATH=src python tests/task_snapshot.py \
        tests/data/task_snapshot.json
"""

from __future__ import annotations

import hashlib
import json
import sys

TASK_ATTRIBUTES = (
    "name", "labels", "verbalizer", "template", "eval_split", "pool_split", "instruction",
    "demo_separator", "description", "per_example_choices", "no_pool_hint", "domain_premise",
)
EDGE = 3  # examples kept verbatim from each end of a split


def _digest(values) -> str:
    text = json.dumps(values, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _example(task, ex) -> dict:
    return {
        "fields": ex.fields, "label": ex.label, "choices": list(ex.choices or []) or None,
        "uid": ex.uid, "render": task.render(ex), "answers": task.answer_options(ex),
    }


def _split(task, examples) -> dict:
    rows = [_example(task, ex) for ex in examples]
    ends = rows if len(rows) <= 2 * EDGE else rows[:EDGE] + rows[-EDGE:]
    ends = [{k: v for k, v in row.items() if k in ("fields", "label", "choices", "uid")}
            for row in ends]
    return {"count": len(rows), "hash": _digest(rows), "ends": _short(ends)}


def _short(rows: list[dict]) -> list[dict]:
    """Long texts (BoolQ passages) kept as their head and a hash; the full hash covers them."""
    def cut(value):
        if isinstance(value, str) and len(value) > 300:
            return value[:120] + f"…[{len(value)} chars, {_digest(value)}]"
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value
    return [cut(r) for r in rows]


def classification_task(name: str) -> dict:
    from lmboost.tasks import get_task

    task = get_task(name)
    entry = {attr: getattr(task, attr) for attr in TASK_ATTRIBUTES}
    evaluation = task.load_eval()
    entry["eval"] = _split(task, evaluation)
    if task.has_pool:
        pool = task.load_pool()
        entry["pool"] = _split(task, pool)
        entry["prompt"] = _short([task.prompt(evaluation[0], pool[:2])])[0]
    return entry


def reasoning_family(names: list[str]) -> dict:
    from lmboost.reasoning import (
        MODES,
        answer_prompt,
        build_prompt,
        exemplars,
        extract,
        load_items,
        mmlu_context,
        task_names,
    )
    from lmboost.reasoning.prompts import answer_trigger, stop_strings

    out: dict = {"stop": {f"{m}/{c}": list(stop_strings(m, c)) for m in MODES for c in (0, 1)}}
    for name in names:
        subs = task_names(name)
        entry: dict = {"sub_tasks": subs}
        items = load_items(name)
        entry["items"] = {
            "count": len(items),
            "hash": _digest([[i.uid, i.task, i.question, i.target, list(i.options)]
                             for i in items]),
        }
        for number, sub in enumerate(subs):
            shots = exemplars(sub)
            sub_items = [i for i in items if i.task == sub]
            first = sub_items[0]
            record: dict = {
                "count": len(sub_items),
                "exemplars": _digest([[s.question, s.rationale, s.answer, list(s.options)]
                                      for s in shots]),
                "trigger": answer_trigger(first),
                "second_stage": list(answer_prompt(build_prompt(first, "zs-cot"), " c. ", first)),
            }
            for mode in MODES:
                prompts = [list(p) if not isinstance(p, str) else p
                           for p in (build_prompt(i, mode) for i in sub_items)]
                record[mode] = {"hash": _digest(prompts)}
                if number == 0:  # one readable prompt per family and mode
                    record[mode]["first"] = _short([prompts[0]])[0]
            if sub.startswith("mmlu:"):
                record["mmlu_context"] = _digest([mmlu_context(i) for i in sub_items])
            texts = ["The answer is {t}.", "{t}", "So the answer is (B).", "A: 7 and 12", "no"]
            record["extract"] = _digest([
                [extract(i, t.format(t=i.target)) for t in texts] for i in sub_items
            ])
            entry[sub] = record
        out[name] = entry
    return out


REASONING_NAMES = ["gsm8k", "bbh", "mmlu"]


def snapshot() -> dict:
    from lmboost.tasks import list_tasks

    return {
        "tasks": {name: classification_task(name) for name in list_tasks()},
        "reasoning": reasoning_family(REASONING_NAMES),
    }


if __name__ == "__main__":
    data = snapshot()
    text = json.dumps(data, ensure_ascii=False, indent=0, sort_keys=True) + "\n"
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{len(data['tasks'])} tasks, {len(text.encode()) // 1024} KB")
