"""Run association tests on one model: encode every text once, test, record, report.

:func:`run_bias` loads the named SEAT/WEAT tests (failing before the model loads if one is
unknown or malformed), encodes each distinct text of all of them once with the chosen pooling,
runs :func:`lmboost.bias.weat.weat` on each test, and writes

- ``out/results.json``: the settings and, per test, its sets, effect size, statistic, p-value
  (and how it was obtained) and the association s(w, A, B) of every target example;
- ``out/settings.json``: the settings, written first (a rerun with others is refused unless
  ``restart``; the folder is a :class:`~lmboost.evaluation.store.RunStore`, claimed by a lock
  before the model loads);
- ``out/report.md``: a table laid out like May et al.'s SEAT tables (test, target and attribute
  sets, effect size, p-value, set sizes) and ``out/effect_sizes.png``, a bar per test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lmboost import __version__
from lmboost.bias.encoders import POOLINGS, check_pooling, encode
from lmboost.bias.seat import load_test, resolve_tests
from lmboost.bias.weat import weat
from lmboost.errors import BiasTestError, TaskError
from lmboost.evaluation.records import (
    RunTimer,
    atomic_file,
    to_jsonable,
    write_json,
    write_text,
)
from lmboost.evaluation.store import RunConfig, RunStore
from lmboost.models import load_model
from lmboost.models.loading import resolve_dtype

SIGNIFICANCE = 0.01  # the level May et al. (2019) mark in their tables


@dataclass(kw_only=True)
class BiasConfig(RunConfig):
    """Settings of one bias run (the CLI's flags, one to one); ``out``, ``dtype``, ``device``,
    ``trust_remote_code`` and ``restart`` are every run's
    (:class:`~lmboost.evaluation.store.RunConfig`).

    Attributes:
        model: model spec for :func:`lmboost.models.load_model` (a sentence encoder such as
            ``minilm-l6-v2`` or a causal LM).
        tests: test names (``weat1``, ``sent-weat1``, ...), paths to test files, or ``all``.
        pooling: mean (default), first (encoders: [CLS]) or last (causal LMs: final token); see
            :mod:`lmboost.bias.encoders`.
        permutations: the p-value's budget: exact when a test's partitions number at most this,
            else this many sampled partitions.
        seed: seed of the sampled partitions; every test starts from it afresh, so a test's
            p-value does not depend on which other tests run with it.
        batch_size: texts encoded at once.
    """

    model: str
    tests: list[str] = field(default_factory=lambda: ["all"])
    pooling: str = "mean"
    permutations: int = 100_000
    seed: int = 0
    batch_size: int = 32

    def validate(self) -> None:
        """Raise LmboostError with the fix when a setting is out of range or unknown."""
        if not self.tests:
            raise TaskError("tests is empty: name at least one test (e.g. weat1) or all.")
        if self.pooling not in POOLINGS:
            raise BiasTestError(
                f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}."
            )
        super().validate()
        self.check_integers(permutations=1, seed=0, batch_size=1)


def run_bias(config: BiasConfig, progress: bool = True) -> dict[str, Any]:
    """Run the tests ``config`` names on its model; returns the results object, exactly as
    written to ``out/results.json``; the report goes to ``out/report.md``."""
    config.validate()
    tests = [load_test(name) for name in resolve_tests(config.tests)]
    out = Path(config.out)
    settings = config.settings() | {"dtype": resolve_dtype(config.dtype, config.device)}
    with RunStore(out, "bias", settings, restart=config.restart):
        results = _run(config, tests, progress)
        write_json(out / "results.json", results)
        write_report(results, out)
    return results


def _run(config: BiasConfig, tests: list, progress: bool) -> dict[str, Any]:
    """Encode every text once, test, and build the results object."""
    timer = RunTimer()
    loaded = load_model(config.model, dtype=config.dtype, device=config.device,
                        trust_remote_code=config.trust_remote_code)
    check_pooling(loaded, config.pooling)
    texts = list(dict.fromkeys(t for test in tests for t in test.texts()))
    vectors = encode(
        loaded, texts, pooling=config.pooling, batch_size=config.batch_size, progress=progress
    )
    row = {text: i for i, text in enumerate(texts)}
    records = []
    for test in tqdm(tests, desc="tests", unit="test", disable=not progress):
        sets = {
            key: vectors[[row[t] for t in concept.examples]]
            for key, concept in test.concepts().items()
        }
        result = weat(
            sets["targ1"], sets["targ2"], sets["attr1"], sets["attr2"],
            permutations=config.permutations, seed=config.seed,
        )
        records.append({
            "test": test.name,
            "file": test.path,
            "sets": {
                key: {"category": c.category, "size": len(c.examples)}
                for key, c in test.concepts().items()
            },
            **result.to_dict(),
        })
    return to_jsonable({
        "kind": "bias",
        "lmboost_version": __version__,
        "config": config.to_dict(),
        "model": {
            "spec": config.model,
            "dtype": resolve_dtype(config.dtype),
            "kind": "sentence encoder" if loaded.is_encoder else "causal LM",
            "pooling": config.pooling,
            "dim": int(vectors.shape[1]),
        },
        "texts_encoded": len(texts),
        "significance": SIGNIFICANCE,
        "tests": records,
        **timer.fields(),
    })


def summary_table(results: dict[str, Any]) -> str:
    """Markdown table, one row per test: sets, effect size (``*``: p < 0.01), p-value, how the
    p-value was obtained, and the sizes |X|/|Y|/|A|/|B|."""
    lines = [
        "| test | targets (X vs Y) | attributes (A vs B) | effect size | p-value | p from "
        "| X/Y/A/B |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in results["tests"]:
        sets = r["sets"]
        d = r["effect_size"]
        star = "*" if r["p_value"] < results["significance"] else ""
        cells = [
            r["test"],
            f"{sets['targ1']['category']} vs {sets['targ2']['category']}",
            f"{sets['attr1']['category']} vs {sets['attr2']['category']}",
            "n/a" if d is None else f"{d:.2f}{star}",
            _format_p(r["p_value"]),
            f"exact ({r['permutations']})" if r["p_method"] == "exact"
            else f"{r['permutations']} samples",
            "/".join(str(sets[k]["size"]) for k in ("targ1", "targ2", "attr1", "attr2")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``report.md`` and ``effect_sizes.png`` into ``out``; returns the report's path."""
    out = Path(out)
    config, model = results["config"], results["model"]
    level = results["significance"]
    lines = [
        f"# Association tests (WEAT/SEAT) on {model['spec']}",
        "",
        f"- model: `{model['spec']}` ({model['kind']}, {model['dtype']}, {model['dim']} "
        f"dimensions), {model['pooling']} pooling of the last hidden layer",
        f"- tests: {len(results['tests'])}; distinct texts encoded: {results['texts_encoded']}",
        "- effect size: d = (mean_x s(x) - mean_y s(y)) / std_{w in X u Y} s(w) (sample std), "
        "with s(w) = mean_a cos(w, a) - mean_b cos(w, b); d > 0: X is closer to A and Y to B",
        "- p-value: one-sided permutation test of S = sum_x s(x) - sum_y s(y) over partitions of "
        f"X u Y; exact where they number at most {config['permutations']}, else "
        f"{config['permutations']} sampled (seed {config['seed']}; smallest possible p "
        f"{_format_p(1 / (config['permutations'] + 1))})",
        "",
        summary_table(results),
        "",
        f"\\* p < {level}.",
        "",
    ]
    _plot_effect_sizes(results, out / "effect_sizes.png")
    lines += ["![effect size per test](effect_sizes.png)", ""]
    return write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")


def _format_p(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _plot_effect_sizes(results: dict[str, Any], path: Path) -> None:
    """Horizontal bars, one per test in table order, coloured by significance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = results["tests"]
    level = results["significance"]
    d = np.array([np.nan if r["effect_size"] is None else r["effect_size"] for r in rows])
    significant = np.array([r["p_value"] < level for r in rows])
    fig = Figure(figsize=(6.0, 1.2 + 0.28 * len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, np.nan_to_num(d), color=np.where(significant, "tab:red", "tab:gray"))
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [r["test"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("effect size d")
    ax.set_title(f"{results['model']['spec']} ({results['model']['pooling']} pooling)", fontsize=9)
    ax.legend(
        handles=[Patch(color="tab:red", label=f"p < {level}"),
                 Patch(color="tab:gray", label=f"p ≥ {level}")],
        fontsize=7,
    )
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
