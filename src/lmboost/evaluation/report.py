"""The Markdown report of an ICL + calibration run, with its plots, from the results object alone.

``write_report(results, out)`` writes ``out/report.md``, ``out/accuracy.png`` (accuracy by method
and shots, std over seeds as error bars) and ``out/reliability.png`` (reliability diagrams of the
uncalibrated scores, BC and the most accurate method at the largest shot count, seeds pooled).
Plots use matplotlib's Agg canvas directly, so no display and no global backend are involved.

``markdown_table(rows, columns, formats)`` is the one Markdown table renderer of lmboost's reports
and of the benchmark scripts' summaries; ``percent``, ``points``, ``mean_std`` and
``short_count`` write the cells those summaries share (a fraction as a percentage, with or
without its sign, mean ± std, a parameter count as 35k or 1.2M).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmboost.evaluation.records import atomic_file, write_text

METRICS = {"accuracy": "Accuracy (%)", "macro_f1": "Macro-F1 (%)", "ece": "ECE (10 bins, %)"}


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``report.md`` and its two plots into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = results["summary"]
    shots = results["config"]["shots"]
    top = max(shots)
    lines = _header(results)
    for metric, title in METRICS.items():
        lines += [f"## {title}", "", summary_table(results, metric), ""]
    note = same_seed_note(results)
    if note:
        lines += [note, ""]
    if _plot_accuracy(results, out / "accuracy.png"):
        lines += ["![accuracy by method and shots](accuracy.png)", ""]
    lines += _distribution_section(results)
    lines += _gamma_section(rows)
    methods = _reliability_methods(rows, top)
    if methods and _plot_reliability(results, methods, top, out / "reliability.png"):
        lines += [
            f"## Reliability at {top} shots",
            "",
            f"Seeds pooled; {', '.join(methods)}. Bars: accuracy per confidence bin; dashed "
            "line: perfect calibration.",
            "",
            "![reliability diagrams](reliability.png)",
            "",
        ]
    lines += _not_applicable_section(rows)
    return write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")


def summary_table(results: dict[str, Any], metric: str = "accuracy") -> str:
    """Markdown table, methods x shots, of "mean ± std" over seeds of ``metric`` (in %)."""
    shots = results["config"]["shots"]
    cells = {(r["method"], r["shots"]): r for r in results["summary"]}
    head = "| method | " + " | ".join(f"{k}-shot" for k in shots) + " |"
    lines = [head, "|---|" + "---:|" * len(shots)]
    for method in results["config"]["calibration"]:
        row = [_cell(cells[(method, k)], metric) for k in shots]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _cell(row: dict[str, Any], metric: str) -> str:
    if row["status"] != "ok":
        return "n/a"
    stat = row[metric]
    if row["n_seeds"] == 1 or row.get("same_every_seed"):
        return f"{100 * stat['mean']:.1f}"
    return mean_std(stat)


def tasks_table(
    summaries: Mapping[str, Sequence[Mapping[str, Any]]], shots: int, methods: Sequence[str],
    metric: str = "accuracy",
) -> str:
    """Markdown table, tasks x methods, of "mean ± std" over seeds of ``metric`` (in %) at
    ``shots``, from each task's ICL summary rows (``results["summary"]`` of
    :func:`lmboost.icl.run_icl`): the best mean of each task in bold, "n/a" where a method does
    not apply, and a last row with each method's mean over the tasks where it applies (count)."""
    table, applicable = [], {m: [] for m in methods}
    for task, rows in summaries.items():
        stats = {r["method"]: r[metric] for r in rows if r["shots"] == shots
                 and r["status"] == "ok"}
        best = max((stats[m]["mean"] for m in methods if m in stats), default=None)
        cells = []
        for m in methods:
            if m not in stats:
                cells.append("n/a")
                continue
            applicable[m].append(stats[m]["mean"])
            mean = f"{100 * stats[m]['mean']:.1f}"
            cells.append(f"{f'**{mean}**' if stats[m]['mean'] == best else mean} ± "
                         f"{100 * stats[m]['std']:.1f}")
        table.append([task, *cells])
    table.append(["mean, tasks where each applies (count)", *(
        f"{100 * np.mean(v):.1f} ({len(v)})" if v else "n/a" for v in applicable.values())])
    return markdown_table(table, ["task", *methods],
                          align=dict.fromkeys(range(1, len(methods) + 1), "right"))


def same_seed_note(results: dict[str, Any]) -> str | None:
    """Why some cells have no ± (their method saw the same inputs in every seed), or None."""
    same = [r for r in results["summary"] if r["status"] == "ok" and r.get("same_every_seed")]
    if not same:
        return None
    where = sorted({r["shots"] for r in same})
    methods = list(dict.fromkeys(r["method"] for r in same))
    shots = ", ".join(map(str, where))
    zero = " (no demonstrations to draw)" if where == [0] else ""
    return (
        f"Cells without ± ({', '.join(methods)} at {shots} shots) are one value, not a mean over "
        f"seeds: every seed gave those methods the same prompt{zero} and the same inputs, so the "
        "seeds repeat one measurement."
    )


def label_names(task: dict[str, Any]) -> list[str]:
    """What to call each label in tables: its label word, or its name when examples carry their
    own answer options (then there is no single word per label)."""
    if task.get("per_example_choices"):
        return list(task["labels"])
    return list(task["verbalizer"])


def _labels_line(task: dict[str, Any]) -> str:
    names, words = task["labels"], label_names(task)
    if names == words:
        return f"labels {', '.join(names)}"
    return "labels " + ", ".join(f"{n} = {w!r}" for n, w in zip(names, words))


def _header(results: dict[str, Any]) -> list[str]:
    config, task, ev = results["config"], results["task"], results["eval"]
    size = f"{ev['n']} ({ev['sample']})" if ev["sample"] else f"{ev['n']} (all)"
    seeds = config["seeds"]
    source = results.get("source") or {}
    lines = [
        f"# In-context learning with calibration: {task['name']} on {results['model']['spec']}",
        "",
        f"- model: `{results['model']['spec']}` ({results['model']['dtype']})",
        f"- task: {task['name']}, {_labels_line(task)}; eval split {task['eval_split']}",
        f"- eval examples: {size}",
    ]
    if source.get("kind") == "lm-eval":
        lines.append(
            f"- scores: the lm-evaluation-harness log `{source['path']}` ({source['n_shot']}-shot; "
            f"lm-eval reported acc {_maybe(source.get('reported_acc'))}), calibrated here "
            "without a model"
        )
    else:
        lines.append(
            f"- shots: {', '.join(map(str, config['shots']))}; seeds: {seeds} (0..{seeds - 1}); "
            f"demonstrations: {config['demo_strategy']}; labelled set (bcl, linc, hidden, knn): "
            f"{config['labelled_size']} pool examples per seed"
        )
        if "gc" in config["calibration"]:
            lines.append(f"- gc: {config['n_gc']} pseudo-inputs sampled per prompt")
        if source:
            lines.append(f"- scores: stored in `{source['path']}`, recalibrated without a model")
    lines += _budget_lines(results["summary"])
    lines.append(
        f"- run: {results['started']} to {results['finished']}, {results['wall_time_s']:.0f} s"
    )
    if seeds > 1:
        lines += [
            "",
            "Cells are mean ± std over seeds (population std). Each seed draws its own "
            "demonstrations, labelled set and domain strings.",
        ]
    return [*lines, ""]


def _maybe(value: float | None) -> str:
    return "(not found)" if value is None else f"{value:.4f}"


def _budget_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The labelled-data budget each method that learns from labels spent."""
    spent: dict[str, set[int]] = {}
    for r in rows:
        if r["status"] == "ok" and "n_labelled" in r:
            spent.setdefault(r["method"], set()).update(r["n_labelled"])
    if not spent:
        return []
    parts = [
        f"{m} {'-'.join(map(str, sorted({min(n), max(n)})))}" for m, n in spent.items()
    ]
    return [f"- labelled examples spent per fit: {', '.join(parts)}"]


def _distribution_section(results: dict[str, Any]) -> list[str]:
    """Predicted-label distribution of the uncalibrated scores vs BC, per shots."""
    rows = {(r["method"], r["shots"]): r for r in results["summary"] if r["status"] == "ok"}
    methods = [m for m in ("none", "bc") if any(key[0] == m for key in rows)]
    if not methods:
        return []
    labels = label_names(results["task"])
    gold = np.bincount(results["eval"]["labels"], minlength=len(labels)) / results["eval"]["n"]
    lines = [
        "## Predicted-label distribution (%, mean over seeds)",
        "",
        "| shots | method | " + " | ".join(labels) + " |",
        "|---:|---|" + "---:|" * len(labels),
        "| | gold | " + " | ".join(f"{100 * g:.1f}" for g in gold) + " |",
    ]
    for k in results["config"]["shots"]:
        for m in methods:
            if (m, k) in rows:
                dist = rows[(m, k)]["label_distribution"]
                lines.append(f"| {k} | {m} | " + " | ".join(f"{100 * d:.1f}" for d in dist) + " |")
    return [*lines, ""]


def _gamma_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    with_gamma = [r for r in rows if r["status"] == "ok" and "gamma" in r]
    if not with_gamma:
        return []
    lines = ["## Chosen gamma per seed", "", "| method | shots | gamma by seed |", "|---|---:|---|"]
    for r in with_gamma:
        gammas = ", ".join(f"{g:g}" for g in r["gamma"])
        lines.append(f"| {r['method']} | {r['shots']} | {gammas} |")
    return [*lines, ""]


def _not_applicable_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    reasons = {r["method"]: r["reason"] for r in rows if r["status"] != "ok"}
    if not reasons:
        return []
    return ["## Not applicable", "", *(f"- {m}: {why}" for m, why in reasons.items()), ""]


def _reliability_methods(rows: Sequence[dict[str, Any]], shots: int) -> list[str]:
    """none, bc and the most accurate method at ``shots`` (each once, those that ran)."""
    ok = [r for r in rows if r["shots"] == shots and r["status"] == "ok"]
    if not ok:
        return []
    best = max(ok, key=lambda r: r["accuracy"]["mean"])["method"]
    ran = {r["method"] for r in ok}
    return [m for m in dict.fromkeys(["none", "bc", best]) if m in ran]


def _plot_accuracy(results: dict[str, Any], path: Path) -> bool:
    """Grouped bars: one group per shot count, one bar per method, std error bars."""
    rows = {(r["method"], r["shots"]): r for r in results["summary"] if r["status"] == "ok"}
    if not rows:
        return False
    from matplotlib.figure import Figure

    shots = results["config"]["shots"]
    methods = [m for m in results["config"]["calibration"] if any(key[0] == m for key in rows)]
    width = 0.8 / len(methods)
    fig = Figure(figsize=(max(5.0, 1.2 * len(shots) * len(methods) / 2), 3.6))
    ax = fig.add_subplot()
    x = np.arange(len(shots))
    for i, m in enumerate(methods):
        stats = [rows[(m, k)]["accuracy"] if (m, k) in rows else None for k in shots]
        means = [100 * s["mean"] if s else np.nan for s in stats]
        stds = [100 * s["std"] if s else 0.0 for s in stats]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
               label=m)
    chance = 100 / len(results["task"]["labels"])
    ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(x, [f"{k}-shot" for k in shots])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{results['task']['name']} on {results['model']['spec']}", fontsize=9)
    ax.legend(fontsize=7, ncol=min(4, len(methods) + 1))
    fig.tight_layout()
    _save_figure(fig, path)
    return True


def _plot_reliability(
    results: dict[str, Any], methods: Sequence[str], shots: int, path: Path
) -> bool:
    """One reliability diagram per method at ``shots``, bins pooled over seeds."""
    from matplotlib.figure import Figure

    runs = [r for r in results["runs"] if r["shots"] == shots]
    fig = Figure(figsize=(3.2 * len(methods), 3.2))
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    for ax, m in zip(axes, methods):
        conf, acc, count = _pooled_bins([r["metrics"][m]["reliability"] for r in runs])
        n_bins = len(count)
        centres = (np.arange(n_bins) + 0.5) / n_bins
        filled = count > 0
        ece = float(np.sum(count[filled] * np.abs(acc[filled] - conf[filled])) / count.sum())
        ax.bar(centres[filled], acc[filled], 1 / n_bins, edgecolor="black", linewidth=0.5,
               label="accuracy")
        ax.plot(conf[filled], acc[filled], "o", color="darkred", markersize=3,
                label="(confidence, accuracy)")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{m}  (ECE {100 * ece:.1f}%)", fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save_figure(fig, path)
    return True


def _pooled_bins(bins: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and count per bin over several seeds' reliability bins."""
    count = np.sum([b["count"] for b in bins], axis=0).astype(np.float64)
    weighted = {}
    for key in ("confidence", "accuracy"):
        values = [np.nan_to_num(np.array(b[key], dtype=np.float64)) for b in bins]
        total = np.sum([v * np.array(b["count"]) for v, b in zip(values, bins)], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            weighted[key] = total / count
    return weighted["confidence"], weighted["accuracy"], count


def _save_figure(fig: Any, path: Path) -> None:
    """Render ``fig`` with the Agg canvas and write it as a PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


# --------------------------------------------------------------------------- tables


def percent(value: float | None, digits: int = 1, *, sign: str = "%", missing: str = "—") -> str:
    """A fraction as a percentage with ``digits`` decimals (0.1234 -> "12.3%"; ``sign=""`` for
    a column headed in percent: "12.3"); None -> ``missing``."""
    return missing if value is None else f"{100 * value:.{digits}f}{sign}"


def points(value: float | None, missing: str = "—") -> str:
    """A fraction in percentage points, one decimal, for a column headed in percent (0.8125 ->
    "81.2"); None -> ``missing``."""
    return percent(value, sign="", missing=missing)


def mean_std(stat: Mapping[str, float] | None, digits: int = 1, *, scale: float = 100.0,
             missing: str = "n/a") -> str:
    """A ``{"mean", "std"}`` summary (over seeds) as "mean ± std", both times ``scale`` (by
    default fractions become percentage points: 0.682, 0.098 -> "68.2 ± 9.8"); None ->
    ``missing``."""
    if stat is None:
        return missing
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def markdown_table(
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    columns: Sequence[str],
    formats: Mapping[str | int, str | Callable[[Any], str]] | None = None,
    *,
    align: Mapping[str | int, str] | None = None,
    missing: str = "—",
) -> str:
    """A GitHub-flavoured Markdown table, one line per row, no trailing newline.

    Args:
        rows: each a mapping from column name to value (absent names are missing), or a
            sequence of values in column order (short sequences are padded as missing).
        columns: the header, left to right.
        formats: per column (by name, or by position for a name used twice), how to write
            its values that are not None: a format spec
            (``".1f"``), a ``str.format`` template with one field (``"{:.1f}x"``), or a
            function of the value; other columns are written with ``str``.
        align: per column (by name or position), ``"left"`` or ``"right"``; by default a
            column is right-aligned when all of its present values are numbers (``bool`` is
            not), else left-aligned.
        missing: what a None (or absent) value is written as.

    A ``|`` in a cell is escaped and a newline becomes a space, so every row stays one line.
    """
    formats = dict(formats or {})
    align = dict(align or {})
    unknown = [k for k in [*formats, *align] if k not in columns
               and not (isinstance(k, int) and 0 <= k < len(columns))]
    if unknown:
        raise ValueError(f"formats / align name columns not in the table: {unknown}")
    table = [_row_values(row, columns) for row in rows]
    head = [_escape(str(c)) for c in columns]
    rule = []
    for j, column in enumerate(columns):
        numeric = _numeric([r[j] for r in table])
        side = align.get(j) or align.get(column) or ("right" if numeric else "left")
        if side not in ("left", "right"):
            raise ValueError(f"align[{column!r}] must be 'left' or 'right', not {side!r}")
        rule.append("---:" if side == "right" else "---")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(rule) + "|"]
    for values in table:
        cells = [_format(v, formats.get(j, formats.get(c)), missing)
                 for j, (c, v) in enumerate(zip(columns, values))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row_values(row: Mapping[str, Any] | Sequence[Any], columns: Sequence[str]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(c) for c in columns]
    values = list(row)
    if len(values) > len(columns):
        raise ValueError(f"a row has {len(values)} values for {len(columns)} columns: {values}")
    return values + [None] * (len(columns) - len(values))


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, numbers.Number) and not isinstance(v, bool) for v in present
    )


def _format(value: Any, how: str | Callable[[Any], str] | None, missing: str) -> str:
    if value is None:
        return missing
    if how is None:
        text = str(value)
    elif callable(how):
        text = how(value)
    elif "{" in how:
        text = how.format(value)
    else:
        text = format(value, how)
    return _escape(text)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def short_count(n: int) -> str:
    """A count in millions with one decimal from a million on, else in thousands
    (124_645_632 -> ``"124.6M"``, 35_840 -> ``"36k"``)."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
