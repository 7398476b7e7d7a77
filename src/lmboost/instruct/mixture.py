"""A Flan-style instruction mixture: sample sources, render templates, write JSONL + stats.

:func:`build_mixture` turns a :class:`MixtureConfig` into records
``{"prompt", "completion", "source", "template", "format", "uid"}``:

1. **Hold out**: sources in a ``held_out`` group (:data:`~lmboost.instruct.sources.
   HELD_OUT_GROUPS`) are dropped, so those tasks stay unseen.
2. **Allocate** ``size`` records among the rest. A source supplies at most
   ``min(available, cap) x templates_per_example`` records. Sources named in ``rates`` get that
   fraction of the mixture; the others share what is left in proportion to their capped sizes
   (examples-proportional mixing with an artificial limit, Raffel et al. 2020). A source that runs
   out passes its remainder on to the others; ``stats.json`` records the shares reached.
3. **Sample** examples per source with ``random.Random(f"{seed}:{source}")`` and render each with
   ``templates_per_example`` distinct templates. Each rendering is few-shot with probability
   ``few_shot_fraction`` (``few_shot_k`` solved examples of the same source and template, dropped
   from the front while the prompt exceeds ``max_prompt_chars``), and a classification prompt
   shows its options block with probability ``options_fraction`` (always for COPA).
4. **Shuffle** all records with ``random.Random(seed)``.

The same config and data give the same records, byte for byte. :func:`write_mixture` writes
``mixture.jsonl`` and ``stats.json`` atomically (:mod:`lmboost.evaluation.records`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmboost.config import from_dict, merge, read_yaml
from lmboost.evaluation.records import atomic_file, to_jsonable, write_json
from lmboost.instruct.sources import (
    DUPLICATES,
    HELD_OUT_GROUPS,
    Item,
    MixtureError,
    Source,
    check_source_names,
    get_source,
    group_of,
)
from lmboost.instruct.templates import Template, cot_completion, few_shot_prompt

MIXTURE_FILE = "mixture.jsonl"
STATS_FILE = "stats.json"


@dataclass
class MixtureConfig:
    """Everything one mixture depends on (the keys of a mixture YAML file).

    Attributes:
        sources: source names (``lmboost instruct sources``; see :mod:`lmboost.instruct.sources`).
        size: records in the mixture (fewer when the capped sources run out); None: every capped
            example of every source.
        cap: most examples drawn from any one source (None: no limit).
        caps: per-source caps overriding ``cap``.
        rates: target fraction of the mixture per source; the other sources share the rest.
        held_out: group names whose sources are left out (``HELD_OUT_GROUPS``).
        templates_per_example: distinct templates each drawn example is rendered with.
        few_shot_k: solved examples before a few-shot query (0: zero-shot only).
        few_shot_fraction: share of renderings that are few-shot.
        options_fraction: share of classification renderings that show an options block.
        max_prompt_chars: few-shot prompts drop demonstrations until they are this short.
        seed: seed of every random choice.
    """

    sources: list[str] = field(metadata={"help": "the list of source names to mix"})
    size: int | None = 2000
    cap: int | None = 1000
    caps: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    held_out: list[str] = field(default_factory=list)
    templates_per_example: int = 1
    few_shot_k: int = 2
    few_shot_fraction: float = 0.25
    options_fraction: float = 0.5
    max_prompt_chars: int = 1200
    seed: int = 0

    def validate(self) -> None:
        """Raise MixtureError naming the first bad setting and how to fix it."""
        if not isinstance(self.sources, list) or not self.sources or not all(
            isinstance(s, str) for s in self.sources
        ):
            raise MixtureError("sources must be a non-empty list of source names.")
        check_source_names(self.sources)
        repeated = sorted(s for s, n in Counter(self.sources).items() if n > 1)
        if repeated:
            raise MixtureError(f"sources lists {', '.join(repeated)} more than once.")
        for pair in DUPLICATES:
            if all(name in self.sources for name in pair):
                raise MixtureError(
                    f"sources {pair[0]} and {pair[1]} hold the same questions; keep one of them."
                )
        if not isinstance(self.held_out, list):
            raise MixtureError(f"held_out must be a list of group names, not {self.held_out!r}.")
        unknown = [g for g in self.held_out if g not in HELD_OUT_GROUPS]
        if unknown:
            raise MixtureError(
                f"Unknown held-out group {unknown[0]!r}. Groups: {', '.join(HELD_OUT_GROUPS)}."
            )
        for key, mapping in (("caps", self.caps), ("rates", self.rates)):
            if not isinstance(mapping, dict):
                raise MixtureError(f"{key} must map source names to numbers, not {mapping!r}.")
            for name in mapping:
                if name not in self.sources:
                    raise MixtureError(
                        f"{key} names {name!r}, which is not in sources; add it to sources or "
                        f"remove it from {key}."
                    )
        self._check_numbers()

    def _check_numbers(self) -> None:
        counts = {"size": self.size, "cap": self.cap}
        counts.update({f"caps.{name}": cap for name, cap in self.caps.items()})
        for key, value in counts.items():
            if value is not None and (not _is_int(value) or value < 1):
                raise MixtureError(f"{key} must be a whole number >= 1 (or null), not {value!r}.")
        for key, low in (("templates_per_example", 1), ("few_shot_k", 0), ("seed", 0),
                         ("max_prompt_chars", 1)):
            value = getattr(self, key)
            if not _is_int(value) or value < low:
                raise MixtureError(f"{key} must be a whole number >= {low}, not {value!r}.")
        for key in ("few_shot_fraction", "options_fraction"):
            value = getattr(self, key)
            if not _is_number(value) or not 0 <= value <= 1:
                raise MixtureError(f"{key} must be a number in [0, 1], not {value!r}.")
        for name, rate in self.rates.items():
            if not _is_number(rate) or not 0 <= rate <= 1:
                raise MixtureError(f"rates.{name} must be a fraction in [0, 1], not {rate!r}.")
        if sum(self.rates.values()) > 1 + 1e-9:
            raise MixtureError(
                f"rates sum to {sum(self.rates.values()):g}; they are fractions of the mixture "
                "and must sum to at most 1."
            )
        if self.rates and self.size is None:
            raise MixtureError("rates need a size: give size (records) or drop rates.")

    def active_sources(self) -> list[str]:
        """The sources left after removing the held-out groups, in config order."""
        return [s for s in self.sources if group_of(s) not in self.held_out]

    def excluded_sources(self) -> list[str]:
        """The sources a held-out group removes."""
        return [s for s in self.sources if group_of(s) in self.held_out]

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values."""
        return dataclasses.asdict(self)


def load_mixture_config(
    path: str | Path, overrides: Mapping[str, Any] | None = None
) -> MixtureConfig:
    """The checked config of the mixture YAML file at ``path``, with ``overrides`` (config keys;
    mappings such as ``caps`` are merged key by key) laid over it."""
    data = read_yaml(path, what="Mixture config", error=MixtureError)
    return config_from_dict(merge(data, overrides), source=str(path))


def config_from_dict(data: Mapping[str, Any], *, source: str = "mixture config") -> MixtureConfig:
    """A checked :class:`MixtureConfig` from a mapping; unknown keys and values of the wrong type
    raise MixtureError naming the key and ``source`` (:func:`lmboost.config.from_dict`)."""
    config = from_dict(MixtureConfig, data, source=source, error=MixtureError)
    config.validate()
    return config


# --------------------------------------------------------------------------- building


def build_mixture(config: MixtureConfig) -> list[dict[str, str]]:
    """The mixture's records in their final (shuffled) order; see the module docstring."""
    config.validate()
    active = config.active_sources()
    if not active:
        raise MixtureError(
            f"Holding out {', '.join(config.held_out)} removes every source; hold out fewer "
            "groups or add sources."
        )
    sources = {name: get_source(name) for name in active}
    for source in sources.values():
        if config.templates_per_example > len(source.templates):
            raise MixtureError(
                f"templates_per_example is {config.templates_per_example} but source "
                f"{source.name!r} has only {len(source.templates)} templates; lower it."
            )
    items = {name: source.load() for name, source in sources.items()}
    limits = {
        name: min(len(items[name]), _cap(config, name)) * config.templates_per_example
        for name in active
    }
    counts = allocate(config.size, _shares(config, limits), limits)
    records = []
    for name in active:
        rng = random.Random(f"{config.seed}:{name}")
        records += _render_source(sources[name], items[name], counts[name], config, rng)
    if not records:
        raise MixtureError("The mixture is empty: every active source has a rate of 0.")
    random.Random(config.seed).shuffle(records)
    return records


def _cap(config: MixtureConfig, name: str) -> int | float:
    cap = config.caps.get(name, config.cap)
    return math.inf if cap is None else cap


def _shares(config: MixtureConfig, limits: Mapping[str, int]) -> dict[str, float]:
    """Each active source's target fraction: its rate, or a part of the rest in proportion to its
    capped size; named rates alone are rescaled to sum to 1."""
    named = {s: float(config.rates[s]) for s in limits if s in config.rates}
    others = {s: limits[s] for s in limits if s not in named}
    rest = 1.0 - sum(named.values())
    weight = sum(others.values())
    if weight == 0 or rest <= 0:
        total = sum(named.values())
        return {s: (named.get(s, 0.0) / total if total else 0.0) for s in limits}
    return {s: named[s] if s in named else rest * limits[s] / weight for s in limits}


def allocate(
    size: int | None, shares: Mapping[str, float], limits: Mapping[str, int]
) -> dict[str, int]:
    """Whole record counts per source: ``size`` split by ``shares`` without exceeding
    ``limits`` (a source at its limit passes the surplus on), largest remainders rounded up.
    ``size`` None takes every source's limit."""
    if size is None:
        return dict(limits)
    target: dict[str, float] = {s: 0.0 for s in shares}
    open_ = {s for s in shares if shares[s] > 0 and limits[s] > 0}
    budget = float(min(size, sum(limits[s] for s in open_)))
    while open_:
        total = sum(shares[s] for s in open_)
        full = {s for s in open_ if budget * shares[s] / total >= limits[s]}
        if not full:
            for s in open_:
                target[s] = budget * shares[s] / total
            break
        for s in full:
            target[s] = float(limits[s])
            budget -= limits[s]
        open_ -= full
    counts = {s: min(int(target[s]), limits[s]) for s in shares}
    missing = round(sum(target.values())) - sum(counts.values())
    order = sorted(shares, key=lambda s: (counts[s] - target[s], s))
    for s in [s for s in order if counts[s] < limits[s]][:max(0, missing)]:
        counts[s] += 1
    return counts


def _render_source(
    source: Source, items: list[Item], n_records: int, config: MixtureConfig, rng: random.Random
) -> list[dict[str, str]]:
    """``n_records`` renderings: ceil(n / templates_per_example) sampled items, each with that
    many distinct templates (the last item may use fewer)."""
    per_item = config.templates_per_example
    chosen = rng.sample(range(len(items)), math.ceil(n_records / per_item)) if n_records else []
    records = []
    for index in chosen:
        for template in rng.sample(source.templates, per_item):
            if len(records) == n_records:
                break
            records.append(_render(source, items, index, template, config, rng))
    return records


def _render(
    source: Source,
    items: list[Item],
    index: int,
    template: Template,
    config: MixtureConfig,
    rng: random.Random,
) -> dict[str, str]:
    """One record: the item at ``index`` in ``template``, zero- or few-shot, with or without
    options."""
    cot = source.kind == "cot"
    options = not cot and (source.needs_options or rng.random() < config.options_fraction)
    few_shot = config.few_shot_k > 0 and rng.random() < config.few_shot_fraction
    demos: list[int] = []
    if few_shot:
        picks = rng.sample(range(len(items)), min(config.few_shot_k + 1, len(items)))
        demos = [i for i in picks if i != index][: config.few_shot_k]

    def pair(item: Item) -> tuple[str, str]:
        prompt = template.render(item.fields, item.options if options else None)
        completion = cot_completion(item.rationale, item.answer) if cot else " " + item.answer
        return prompt, completion

    prompt, completion = pair(items[index])
    shots = [pair(items[i]) for i in demos]
    while shots and len(few_shot_prompt(shots, prompt)) > config.max_prompt_chars:
        shots.pop(0)
    kind = "cot" if cot else "zs"
    if shots:
        prompt = few_shot_prompt(shots, prompt)
        kind = "cot-fs" if cot else "fs"
    return {
        "prompt": prompt,
        "completion": completion,
        "source": source.name,
        "template": template.name,
        "format": kind + ("-opt" if options else ""),
        "uid": items[index].uid,
    }


# --------------------------------------------------------------------------- writing


def mixture_stats(records: Sequence[Mapping[str, str]], config: MixtureConfig) -> dict[str, Any]:
    """Counts per source, group, template and format, the shares reached, and what was held
    out."""
    per_source = Counter(r["source"] for r in records)
    n = len(records)
    return {
        "n": n,
        "size_requested": config.size,
        "per_source": dict(sorted(per_source.items())),
        "share_per_source": {s: c / n for s, c in sorted(per_source.items())},
        "per_group": dict(sorted(Counter(group_of(r["source"]) for r in records).items())),
        "per_template": dict(sorted(Counter(r["template"] for r in records).items())),
        "per_format": dict(sorted(Counter(r["format"] for r in records).items())),
        "held_out": {"groups": list(config.held_out), "sources": config.excluded_sources()},
        "config": config.to_dict(),
    }


def write_mixture(
    records: Sequence[Mapping[str, str]], out_dir: str | Path, config: MixtureConfig
) -> dict[str, Any]:
    """Write ``out_dir/mixture.jsonl`` (one record per line) and ``out_dir/stats.json``
    (:func:`mixture_stats` plus the file's SHA-256), each atomically; returns the stats."""
    out = Path(out_dir)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with atomic_file(out / MIXTURE_FILE, "w") as f:
        f.write(lines)
    stats = mixture_stats(records, config)
    stats["file"] = MIXTURE_FILE
    stats["sha256"] = hashlib.sha256(lines.encode("utf-8")).hexdigest()
    write_json(out / STATS_FILE, to_jsonable(stats))
    return stats


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
