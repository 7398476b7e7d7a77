"""The comparison reports of several runs, one per capability (compression, bias, calibration,
reasoning, generation backends, serving load test): each renders small hand-made inputs exactly
as the benchmark scripts rendered them before the code moved into the library
(``tests/data/reports/*.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmboost.bias.comparison import comparison_report as bias_report
from lmboost.bias.comparison import comparison_summary as bias_summary
from lmboost.compression.comparison import comparison_report as compression_report
from lmboost.compression.comparison import comparison_summary as compression_summary
from lmboost.evaluation.records import write_json
from lmboost.generation import GenerationConfig, generate
from lmboost.generation.comparison import backend_table, speed_record
from lmboost.icl.comparison import comparison_report as calibration_report
from lmboost.reasoning.comparison import collect_runs, comparison_table
from lmboost.serving.loadtest import load_test_report

EXPECTED = Path(__file__).parent / "data" / "reports"


def stats(params, tps, ppl, disk=None):
    s = {
        "parameters": params,
        "weight_bytes": params * 4,
        "tokens_per_s": tps,
        "perplexity": {"perplexity": ppl},
    }
    if disk is not None:
        s["disk_bytes"] = disk
    return s


def icl(a, b, c, d):
    return {"none": {"mean": a, "std": 0.01}, "bc": {"mean": b, "std": 0.02}}, {
        "none": {"mean": c, "std": 0.03},
        "bc": {"mean": d, "std": 0.0},
    }


b1, a1 = icl(0.6, 0.8, 0.55, 0.75)
COMP_TABLE = {
    "tiny": {
        "wanda-0.5": {
            "before": stats(1000, 50.0, 20.0),
            "after": stats(1000, 40.0, 30.5, 2_500_000),
            "icl": {"before": b1, "after": a1},
            "saved_model": "x/wanda-0.5/model",
        },
        "int8-weight": {
            "before": stats(1000, 50.0, 20.0),
            "after": stats(900, 25.0, 21.25),
            "icl": {"before": b1, "after": a1},
            "saved_model": "x/int8/model",
        },
        "sweep": {
            "before": stats(1000, 50.0, 20.0),
            "sweep": [
                {"method": "magnitude", "amount": 0.1, "perplexity": 21.0},
                {"method": "wanda", "amount": 0.1, "perplexity": 20.5},
                {"method": "magnitude", "amount": 0.5, "perplexity": 90.0},
            ],
        },
    }
}
COMP_SPEEDS = {
    "tiny": {
        "dense/hf": {"tokens_per_s": 25.04},
        "dense/vllm": {"tokens_per_s": 36.46},
        "wanda-0.5/hf": {"tokens_per_s": 20.0},
        "int8-weight/vllm": {"error": "no"},
    }
}


def tst(name, d, p):
    return {
        "test": name,
        "effect_size": d,
        "p_value": p,
        "sets": {
            "targ1": {"category": "Flowers"},
            "targ2": {"category": "Insects"},
            "attr1": {"category": "Pleasant"},
            "attr2": {"category": "Unpleasant"},
        },
    }


BIAS = {
    "enc:mean": {
        "wall_time_s": 12.4,
        "tests": [tst("weat1", 1.234, 0.001), tst("sent-weat6", None, 1.0)],
    },
    "lm:last": {
        "wall_time_s": 3.6,
        "tests": [tst("weat1", -0.5, 0.2), tst("sent-weat6", 0.25, 0.005)],
    },
}


def row(method, shots, acc, f1, status="ok"):
    return {
        "method": method,
        "shots": shots,
        "status": status,
        "accuracy": {"mean": acc, "std": 0.01},
        "macro_f1": {"mean": f1, "std": 0.02},
    }


CAL_SUMMARIES = {
    "sst2": {
        "n": 200,
        "rows": [
            row("none", 1, 0.6, 0.5),
            row("bc", 1, 0.7, 0.65),
            row("cc", 1, 0.702, 0.6),
            row("none", 4, 0.65, 0.6),
            row("bc", 4, 0.8, 0.78),
            row("cc", 4, 0.75, 0.79),
        ],
    },
    "rte": {
        "n": 100,
        "rows": [
            row("none", 1, 0.5, 0.4),
            row("bc", 1, 0.55, 0.5),
            row("cc", 1, 0.6, 0.45, "n/a"),
            row("none", 4, 0.52, 0.5),
            row("bc", 4, 0.5, 0.49),
            row("cc", 4, 0.53, 0.5),
        ],
    },
}
CAL_TIMINGS = {"sst2": 125.0, "rte": 61.2}


def rr(n, acc, spi, used=0, saved=0):
    return {
        "n_items": n,
        "accuracy": acc,
        "seconds_per_item": spi,
        "samples_used": used,
        "samples_saved": saved,
    }


REASON = [
    ("m", "gsm8k", "direct", rr(50, 0.02, 0.5)),
    ("m", "gsm8k", "fs-cot", rr(50, 0.1, 4.0)),
    ("m", "gsm8k", "fs-cot+sc", rr(50, 0.14, 10.0, 180, 70)),
    ("m", "bbh", "zs-cot", rr(81, 0.3, 2.25)),
]

SERVE = {
    "model": "tiny",
    "machine": {"cpu": "Xeon", "cores": 2, "load_average": [1.0, 2.25, 3.0]},
    "levels": [
        {
            "clients": 1,
            "requests": 100,
            "requests_per_s": 10.04,
            "p50_ms": 90.4,
            "p95_ms": 120.0,
            "p99_ms": 150.6,
            "server_errors_5xx": 0,
            "ok": 100,
        },
        {
            "clients": 8,
            "requests": 100,
            "requests_per_s": 40.0,
            "p50_ms": 180.0,
            "p95_ms": 220.0,
            "p99_ms": 300.0,
            "server_errors_5xx": 1,
            "ok": 97,
        },
    ],
    "offline": {"examples_per_s": 50.0, "full_batch_inputs": 8, "full_batch_ms": 200.0},
    "fault": {
        "requests": 100,
        "clients": 8,
        "statuses": {"200": 60, "connection: ConnectError": 40},
        "server_errors_5xx": 0,
        "answered_inputs_incl_warm_start": 92,
        "saved_n_seen": 92,
        "restored_n_seen": 92,
        "lost_updates": 0,
    },
}


def g(engine, name, p, n, s, t, texts):
    return {
        "seconds": s,
        "tokens": t,
        "tokens_per_second": t / s,
        "texts": texts,
        "backend": engine,
        "setting": name,
        "prompts": p,
        "samples": n,
    }


GEN = {
    ("hf", "greedy"): g("hf", "greedy", 2, 1, 10.0, 256, ["a", "b"]),
    ("vllm", "greedy"): g("vllm", "greedy", 2, 1, 4.0, 256, ["a", "c"]),
    ("hf", "sampled"): g("hf", "sampled", 1, 5, 8.0, 640, list("vwxyz")),
    ("vllm", "sampled"): g("vllm", "sampled", 1, 5, 3.0, 640, list("vwxyz")),
}


def expected(name: str) -> str:
    return (EXPECTED / f"{name}.md").read_text(encoding="utf-8")


def test_compression_report_and_summary():
    text = compression_report(COMP_TABLE, COMP_SPEEDS, ppl_tokens=2048, icl_limit=200, icl_seeds=2)
    assert text == expected("compression")
    summary = compression_summary(
        {
            "m": {
                "c": {
                    **COMP_TABLE["tiny"]["wanda-0.5"],
                    "sweep": None,
                    "wall_time_s": 3.0,
                    "config": {},
                }
            }
        }
    )
    assert list(summary["m"]["c"]) == ["before", "after", "icl", "sweep", "wall_time_s"]


def test_bias_report_and_summary():
    assert bias_report(BIAS) == expected("bias")
    runs = {run: {**r, "model": {"dim": 8}} for run, r in BIAS.items()}
    assert bias_summary(runs)["lm:last"] == {
        "wall_time_s": 3.6,
        "dim": 8,
        "tests": {
            "weat1": {"effect_size": -0.5, "p_value": 0.2},
            "sent-weat6": {"effect_size": 0.25, "p_value": 0.005},
        },
    }


def test_calibration_report():
    text = calibration_report(
        "tiny",
        CAL_SUMMARIES,
        CAL_TIMINGS,
        shots=[1, 4],
        methods=["none", "bc", "cc"],
        seeds=3,
        limit=200,
        labelled_size=16,
    )
    assert text == expected("calibration")


def test_reasoning_table_and_runs_collected_in_order(tmp_path):
    assert comparison_table(REASON, 5) == expected("reasoning")
    for model, task, setting, r in reversed(REASON):
        write_json(tmp_path / model / f"{task}-{setting}" / "results.json", r)
    write_json(tmp_path / "m" / "gsm8k-other" / "results.json", {})  # not a listed setting
    runs = collect_runs(
        tmp_path, ["gsm8k", "bbh", "mmlu"], ["direct", "zs-cot", "fs-cot", "fs-cot+sc"]
    )
    assert runs == REASON


def test_serving_load_test_report():
    assert load_test_report(SERVE) == expected("serve")


def test_generation_backend_table():
    assert "\n" + backend_table(GEN) + "\n" == expected("generation")


def test_speed_record_times_the_generated_texts(tiny_model):
    config = GenerationConfig(max_new_tokens=5)
    prompts = ["The cat", "A ship"]
    record = speed_record(tiny_model, prompts, config, n=2)
    assert record["texts"] == generate(tiny_model, prompts, config, n=2)
    assert record["tokens_per_second"] == pytest.approx(record["tokens"] / record["seconds"])
    assert record["prompt_tokens"] == sum(
        len(tiny_model.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts
    )
