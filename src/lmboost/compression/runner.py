"""One compression experiment: prune and/or quantize a model and measure what it cost.

:func:`run_compression` loads the model, measures it (parameters, sparsity of the decoder Linears,
weight bytes, forward throughput, strided perplexity, optionally SST-2 4-shot ICL accuracy with
batch calibration), optionally sweeps pruning amounts on copies of the dense model, prunes
(``--prune``), quantizes (``--quantize``), measures again, saves the result to ``out/model`` and
writes ``out/results.json``, ``out/report.md`` and, for a sweep, ``out/sweep.png``. The folder
is a :class:`~lmboost.evaluation.store.RunStore`: claimed by a lock before the model loads, its
settings written first (a rerun with others is refused unless ``restart``).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lmboost import __version__
from lmboost.backends.hf import HFBackend
from lmboost.compression import Pruner, get_pruner, parse_amount, parse_prune_spec
from lmboost.compression.layerwise import calibration_ids
from lmboost.compression.magnitude import SCOPES
from lmboost.compression.oneshot import (
    ONESHOT_SCHEMES,
    is_oneshot_compressed,
    prune_modifier,
    quantization_modifiers,
    require_llmcompressor,
    run_oneshot,
    save_compressed_tensors,
)
from lmboost.compression.perplexity import (
    forward_throughput,
    perplexity,
    token_ids,
    wikitext2,
    wikitext2_path,
)
from lmboost.compression.quantize import QUANTIZERS, get_quantizer, quantize, torchao_available
from lmboost.compression.save import load_compressed, save_compressed, weight_bytes
from lmboost.compression.sparsity import sparsity_report
from lmboost.errors import CompressionError, ConfigError, DependencyError
from lmboost.evaluation.records import (
    RunTimer,
    atomic_file,
    read_json,
    to_jsonable,
    write_json,
    write_text,
)
from lmboost.evaluation.store import RunConfig, RunStore
from lmboost.icl import ICLConfig, run_icl
from lmboost.models import load_model
from lmboost.models.loading import resolve_dtype

ICL_TASK = "sst2"
ICL_SHOTS = 4
ICL_METHODS = ["none", "bc"]


@dataclass(kw_only=True)
class CompressConfig(RunConfig):
    """Settings of one compression experiment (the CLI's flags, and ``speed_len`` and
    ``speed_repeats``, which only the Python API sets); ``out``, ``model``,
    ``dtype``, ``trust_remote_code`` and ``restart`` are every run's
    (:class:`~lmboost.evaluation.store.RunConfig`).

    Attributes:
        prune: ``METHOD:AMOUNT`` such as ``magnitude:0.5``, ``wanda:0.5``, ``neurons:0.25``,
            ``neurons-act:0.25``.
        scope: "layer" or "global", for magnitude pruning.
        quantize: a quantization scheme: llm-compressor's ``ONESHOT_SCHEMES`` (w8a8, w4a16)
            or lmboost's own ``lmboost.compression.QUANTIZERS``.
        sweep: ``METHODS:AMOUNTS`` such as ``magnitude,wanda:0.1,0.3,0.5``: each method at
            each amount on a copy of the dense model, perplexity only.
        ppl_text: text file to measure perplexity on (default: WikiText-2 test, raw).
        ppl_tokens: tokens of it to use (its first ones).
        ppl_window, ppl_stride: sliding-window length and step.
        calib_text: calibration text file of the methods that calibrate (wanda, sparsegpt,
            neurons-act, w8a8, w4a16) and of the recovery (default: WikiText-2 validation).
        calib_samples, calib_len: number and length of random calibration windows.
        speed_len, speed_repeats: length of the random batch timed for throughput, and how
            many timed passes (the best counts).
        recover_steps: after structured pruning (neurons, neurons-act), train LoRA adapters
            (r 8) on the calibration text for this many optimizer steps of 8 x ``calib_len``
            tokens and merge them (the LLM-Pruner recipe); 0: no recovery. Quantization, if
            asked, comes after it.
        recover_lr: the recovery's peak learning rate (1e-3: on SmolLM2 at 25% of neurons
            removed it recovered perplexity to +23% of dense, 2e-4 to +29%).
        icl: also measure SST-2 4-shot accuracy (none and BC) before and after (slow).
        icl_limit, icl_seeds: eval examples (a fixed stratified sample) and seeds for it.
        device: where to run ("cpu" by default: the int8 kernels are CPU kernels).
    """

    prune: str | None = None
    scope: str = "layer"
    quantize: str | None = None
    sweep: str | None = None
    ppl_text: Path | None = None
    ppl_tokens: int = 4096
    ppl_window: int = 512
    ppl_stride: int = 256
    calib_text: Path | None = None
    calib_samples: int = 16
    calib_len: int = 256
    speed_len: int = 256
    speed_repeats: int = 3
    recover_steps: int = 0
    recover_lr: float = 1e-3
    icl: bool = False
    icl_limit: int | None = 200
    icl_seeds: int = 3
    device: str = "cpu"

    def validate(self) -> None:
        """Raise LmboostError with the fix when a setting is malformed or out of range."""
        if not (self.prune or self.quantize or self.sweep):
            raise ConfigError("Nothing to do: give a pruning spec, a quantization or a sweep.")
        if self.prune:
            pruner, _ = parse_prune_spec(self.prune)
            if pruner.oneshot:
                require_llmcompressor(pruner.name)
        if self.sweep:
            for pruner in parse_sweep(self.sweep)[0]:
                if pruner.oneshot:
                    require_llmcompressor(pruner.name)
        if self.quantize and self.quantize not in (*ONESHOT_SCHEMES, *QUANTIZERS):
            raise CompressionError(
                f"Unknown quantization {self.quantize!r}; choose one of: "
                f"{', '.join([*ONESHOT_SCHEMES, *QUANTIZERS])}."
            )
        if self.quantize in ONESHOT_SCHEMES:
            require_llmcompressor(self.quantize)
        elif self.quantize:
            get_quantizer(self.quantize)
            if self.quantize == "int8-dynamic-torchao" and not torchao_available():
                raise DependencyError("int8-dynamic-torchao needs torchao: pip install torchao.")
            dtype = resolve_dtype(self.dtype, self.device)
            if self.quantize == "int8-dynamic" and dtype != "float32":
                raise CompressionError("int8-dynamic needs dtype float32.")
            on_cpu = self.device == "cpu" or (
                self.device in ("auto", "balanced") and not torch.cuda.is_available())
            if self.quantize == "int8-dynamic" and not on_cpu:
                raise CompressionError(
                    "int8-dynamic runs on torch's CPU kernels only: pass --device cpu, or use "
                    "--quantize w8a8 (llm-compressor, served by vLLM on GPUs)."
                )
        if self.scope not in SCOPES:
            raise CompressionError(f"scope must be one of {', '.join(SCOPES)}, not {self.scope!r}.")
        super().validate()
        self.check_integers(
            ppl_tokens=2, ppl_window=2, ppl_stride=1, calib_samples=1, calib_len=1, speed_len=1,
            speed_repeats=1, icl_seeds=1, recover_steps=0,
        )
        if self.recover_steps and not self.prune:
            raise ConfigError("recover_steps needs a pruning spec: it retrains what pruning lost.")
        if self.recover_steps and parse_prune_spec(self.prune)[0].zeroes:
            raise ConfigError(
                f"recover_steps works after structured pruning (neurons, neurons-act), not after "
                f"{self.prune}: the merged LoRA update is dense and would fill the zeroed weights "
                "again. Drop --recover-steps, or prune with neurons-act:AMOUNT."
            )
        if not (isinstance(self.recover_lr, float | int) and self.recover_lr > 0):
            raise ConfigError(f"recover_lr must be a positive number, not {self.recover_lr!r}.")
        if self.ppl_stride > self.ppl_window:
            raise ConfigError("ppl_stride must not exceed ppl_window.")
        limit = self.icl_limit
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"icl_limit must be a positive integer or None, not {limit!r}.")


def parse_sweep(spec: str) -> tuple[list[Pruner], list[float]]:
    """``"magnitude,wanda:0.1,0.3,0.5"`` -> ([magnitude, wanda], [0.1, 0.3, 0.5])."""
    methods, sep, amounts = spec.partition(":")
    if not sep or not methods.strip() or not amounts.strip():
        raise CompressionError(
            f"Sweep spec {spec!r} must read METHODS:AMOUNTS, e.g. magnitude,wanda:0.1,0.3,0.5."
        )
    pruners = [get_pruner(m) for m in methods.split(",")]
    values = [parse_amount(a, f"sweep amount in {spec!r}") for a in amounts.split(",")]
    return pruners, values


def run_compression(config: CompressConfig, progress: bool = True) -> dict[str, Any]:
    """Run the experiment ``config`` describes; returns the results object, exactly as written
    to ``out/results.json``; the report goes to ``out/report.md``."""
    config.validate()
    out = Path(config.out)
    with RunStore(out, "compress", config.settings(), restart=config.restart):
        results = _run(config, out, progress)
        write_json(out / "results.json", results)
        write_report(results, out)
    return results


# The earlier name of run_compression, kept so that code written against it still runs.
compress = run_compression


def _run(config: CompressConfig, out: Path, progress: bool) -> dict[str, Any]:
    """Measure, compress, measure again and save the model; the results object."""
    timer = RunTimer()
    loaded = load_model(
        config.model, dtype=config.dtype, device=config.device,
        trust_remote_code=config.trust_remote_code,
    )
    model, tokenizer = loaded.model, loaded.tokenizer
    context = HFBackend.of_module(model).context_window
    window = min(config.ppl_window, context)
    if config.ppl_stride > window:
        raise ConfigError(
            f"--ppl-stride {config.ppl_stride} is longer than the perplexity window: "
            f"--ppl-window {config.ppl_window} is cut to the model's context length of {context} "
            f"tokens; give --ppl-stride {window // 2} (at most {window})."
        )
    ppl_source = config.ppl_text or wikitext2("test")
    ppl_ids = token_ids(tokenizer, ppl_source, config.ppl_tokens)
    speed_ids = _speed_ids(model, config.speed_len)
    calibration = functools.cache(
        lambda: calibration_ids(
            tokenizer, config.calib_text or wikitext2("valid"), config.calib_samples,
            config.calib_len,
        )
    )
    measure = functools.partial(_cost, ppl_ids=ppl_ids, speed_ids=speed_ids, config=config)

    before = {**_structure(sparsity_report(model)), **measure(model)}
    sweep = _sweep(model, config, calibration, ppl_ids, progress) if config.sweep else None
    recovery = None
    if config.recover_steps:  # retrain the pruned model, then quantize what was retrained
        _compress(model, tokenizer, config, calibration, quantize=False)
        model, recovery = _recover(model, tokenizer, config, out, progress)
        _compress(model, tokenizer, config, calibration, prune=False)
    else:
        _compress(model, tokenizer, config, calibration)
    report = sparsity_report(model)  # before lmboost's int8 modules replace the Linears
    if config.quantize and config.quantize not in ONESHOT_SCHEMES:
        quantize(model, config.quantize)
    after = {**_structure(report), **measure(model)}
    if is_oneshot_compressed(model):
        saved = save_compressed_tensors(model, tokenizer, out / "model")
    else:
        saved = save_compressed(model, tokenizer, out / "model")
    after["disk_bytes"] = sum(f.stat().st_size for f in saved.glob("*.safetensors"))
    if config.quantize in ONESHOT_SCHEMES:
        # in memory the Linears are fake-quantized floats: their packed size is what is saved
        after["weight_bytes"] = after["disk_bytes"]
    icl = _icl(config, saved, progress) if config.icl else None

    calibration_text = str(config.calib_text or "WikiText-2 valid (tokenized)")
    return to_jsonable({
        "kind": "compression",
        "lmboost_version": __version__,
        "config": config.to_dict(),
        "model": {
            "spec": config.model, "dtype": resolve_dtype(config.dtype, config.device),
            "device": config.device,
        },
        "perplexity_text": str(config.ppl_text) if config.ppl_text else "WikiText-2 test (raw)",
        "calibration_text": calibration_text if _needs_calibration(config) else None,
        "before": before,
        "after": after,
        "sparsity": report,
        "saved_model": str(saved),
        "recovery": recovery,
        "sweep": sweep,
        "icl": icl,
        **timer.fields(),
    })


# --------------------------------------------------------------------------- steps


def _compress(
    model: nn.Module, tokenizer: Any, config: CompressConfig,
    calibration: Callable[[], torch.Tensor], *, prune: bool = True, quantize: bool = True,
) -> None:
    """Prune ``model`` in place as ``config`` says (``prune``), and quantize it with
    llm-compressor's schemes (``quantize``). llm-compressor's methods run as one ``oneshot``
    recipe (pruning, then quantization of the pruned weights); lmboost's own pruning comes
    before it (and its own quantization, in the caller, after it)."""
    modifiers = []
    zeroed = False
    if config.prune and prune:
        pruner, amount = parse_prune_spec(config.prune)
        zeroed = pruner.zeroes
        if pruner.oneshot:
            modifiers.append(prune_modifier(pruner.name, amount))
        else:
            _prune(model, pruner, amount, config, calibration)
    if config.quantize in ONESHOT_SCHEMES and quantize:
        modifiers += quantization_modifiers(config.quantize, model, keep_zeros=zeroed)
    if modifiers:
        run_oneshot(model, calibration(), modifiers, tokenizer)


def _recover(
    model: nn.Module, tokenizer: Any, config: CompressConfig, out: Path, progress: bool
) -> tuple[nn.Module, dict[str, Any]]:
    """LoRA on the calibration text after pruning, merged into the weights: the pruned model is
    saved to ``out/pruned``, trained by :func:`lmboost.training.run_training` (the ``lm``
    recipe) into ``out/recovery``, and the merged model comes back with the training record.
    A rerun in the same folder resumes a killed training from its last checkpoint, and reuses a
    finished one (the folder's settings are the same, so the pruned model is too)."""
    from lmboost.training import build_config, run_training

    text = config.calib_text or wikitext2_path("valid")
    trained = out / "recovery"
    if (trained / "results.json").exists() and (trained / "merged").is_dir():
        record = read_json(trained / "results.json")
    else:
        pruned = save_compressed(model, tokenizer, out / "pruned")
        record = run_training(build_config({
            "recipe": "lm", "model": str(pruned), "data": str(text), "out": str(trained),
            "block_size": config.calib_len, "max_steps": config.recover_steps,
            "learning_rate": config.recover_lr, "warmup_steps": 0.05,
            "per_device_train_batch_size": 8, "eval_size": 64, "max_eval_examples": 64,
            "eval_steps": config.recover_steps, "save_steps": config.recover_steps,
            "load_best_model_at_end": False, "device": config.device, "seed": 0,
            "lora": {"enabled": True, "r": 8, "alpha": 16, "merge": True},
            "progress": progress, "resume": True,
        }, source="recovery"))
    merged = load_model(str(trained / "merged"), dtype=config.dtype, device=config.device).model
    return merged, {
        "text": str(text), "steps": record["train"]["global_step"],
        "train_loss": record["train"]["train_loss"], "eval": record["eval"],
        "trainable_parameters": record["parameters"]["trainable"],
        "seconds": record["train"]["train_runtime_s"],
    }


def _prune(
    model: nn.Module, pruner: Pruner, amount: float | str, config: CompressConfig,
    calibration: Callable[[], torch.Tensor],
) -> None:
    """Apply ``pruner`` at ``amount`` with the options it takes."""
    options: dict[str, Any] = {}
    if pruner.needs_calibration:
        options["calibration"] = calibration()
    if pruner.scoped:
        options["scope"] = config.scope
    pruner.prune(model, amount, **options)


def _structure(report: dict[str, Any]) -> dict[str, Any]:
    """Parameter counts and decoder-Linear sparsity from a :func:`sparsity_report`."""
    return {
        "parameters": report["parameters"],
        "nonzero_parameters": report["nonzero_parameters"],
        "linear_sparsity": report["total"]["sparsity"],
    }


def _cost(
    model: nn.Module, *, ppl_ids: torch.Tensor, speed_ids: torch.Tensor, config: CompressConfig
) -> dict[str, Any]:
    """Weight bytes, forward throughput and perplexity of ``model``."""
    return {
        "weight_bytes": weight_bytes(model),
        "tokens_per_s": forward_throughput(model, speed_ids, config.speed_repeats),
        "perplexity": perplexity(
            model, ppl_ids, window=config.ppl_window, stride=config.ppl_stride
        ),
    }


def _speed_ids(model: nn.Module, length: int) -> torch.Tensor:
    """A fixed (seed 0) random 1 x L batch of token ids, L capped at the context window."""
    length = min(length, getattr(model.config, "max_position_embeddings", length) or length)
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, model.config.vocab_size, (1, length), generator=generator)


def _sweep(
    model: nn.Module, config: CompressConfig, calibration: Callable[[], torch.Tensor],
    ppl_ids: torch.Tensor, progress: bool,
) -> list[dict[str, Any]]:
    """Perplexity and sparsity of each (method, amount) on a fresh copy of the dense model."""
    pruners, amounts = parse_sweep(config.sweep)
    rows = []
    points = [(p, a) for p in pruners for a in amounts]
    for pruner, amount in tqdm(points, desc="sweep", unit="model", disable=not progress):
        pruned = copy.deepcopy(model)
        _prune(pruned, pruner, amount, config, calibration)
        ppl = perplexity(pruned, ppl_ids, window=config.ppl_window, stride=config.ppl_stride)
        rows.append({
            "method": pruner.name,
            "amount": amount,
            **_structure(sparsity_report(pruned)),
            "perplexity": ppl["perplexity"],
        })
        del pruned  # free it before the next copy
    return rows


def _needs_calibration(config: CompressConfig) -> bool:
    if config.quantize in ONESHOT_SCHEMES:
        return True
    pruners = [parse_prune_spec(config.prune)[0]] if config.prune else []
    if config.sweep:
        pruners += parse_sweep(config.sweep)[0]
    return any(p.needs_calibration for p in pruners)


def _icl(config: CompressConfig, saved: Path, progress: bool) -> dict[str, Any]:
    """SST-2 4-shot accuracy (uncalibrated and BC) of the original and the saved model."""
    stages = {"before": config.model, "after": str(saved)}
    result: dict[str, Any] = {"task": ICL_TASK, "shots": ICL_SHOTS, "limit": config.icl_limit,
                              "seeds": config.icl_seeds}
    for stage, spec in stages.items():
        icl = run_icl(
            ICLConfig(
                task=ICL_TASK, model=spec, shots=[ICL_SHOTS], seeds=config.icl_seeds,
                calibration=ICL_METHODS, limit=config.icl_limit, dtype=config.dtype,
                device=config.device, trust_remote_code=config.trust_remote_code,
                out=Path(config.out) / "icl" / stage,
            ),
            progress=progress,
            loaded=(
                load_compressed(
                    saved, device=config.device, trust_remote_code=config.trust_remote_code
                )
                if stage == "after" else None
            ),
        )
        result[stage] = {row["method"]: row["accuracy"] for row in icl["summary"]}
    return result


# --------------------------------------------------------------------------- report


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``report.md`` (and ``sweep.png`` for a sweep) into ``out``; returns its path."""
    out = Path(out)
    config, after = results["config"], results["after"]
    steps = [s for s in (config["prune"], config["quantize"]) if s]
    lines = [
        f"# Compression of {results['model']['spec']}: {' + '.join(steps) or 'sweep only'}",
        "",
        f"- model: `{results['model']['spec']}` ({results['model']['dtype']}, "
        f"{results['model']['device']})",
        f"- pruning: {config['prune'] or 'none'}"
        + (f" (scope {config['scope']})" if (config["prune"] or "").startswith("magnitude")
           else ""),
        f"- quantization: {config['quantize'] or 'none'}",
        f"- perplexity: {results['perplexity_text']}, first {config['ppl_tokens']} tokens, "
        f"window {after['perplexity']['window']}, stride {after['perplexity']['stride']} "
        f"({after['perplexity']['tokens']} tokens scored)",
    ]
    if results["calibration_text"]:
        lines.append(
            f"- calibration: {config['calib_samples']} x {config['calib_len']} tokens of "
            f"{results['calibration_text']}"
        )
    recovery = results.get("recovery")
    if recovery:
        lines.append(
            f"- recovery: LoRA (r 8) on {recovery['text']}, {recovery['steps']} steps of 8 x "
            f"{config['calib_len']} tokens, merged; final training loss "
            f"{recovery['train_loss']:.3f} ({recovery['seconds']:.0f} s)"
        )
    lines += [
        f"- throughput: forward passes over 1 x {config['speed_len']} random tokens, best of "
        f"{config['speed_repeats']}",
        "",
        summary_table(results),
        "",
    ]
    icl = results["icl"]
    if icl:
        lines += [
            f"ICL: {icl['task']}, {icl['shots']} shots, {icl['seeds']} seeds, "
            f"{icl['limit'] or 'all'} eval examples; uncalibrated (none) and batch calibration "
            "(bc), mean ± std over seeds.",
            "",
        ]
    lines += [
        f"Weights: bytes of the tensors saved. The compressed model is in `model/` "
        f"({after['disk_bytes'] / 1e6:.2f} MB of safetensors): pass the folder to any "
        "command's `--model` (Python: `lmboost.models.load_model`).",
        "",
    ]
    lines += _sparsity_section(results["sparsity"])
    if results["sweep"]:
        lines += _sweep_section(results, out)
    return write_text(out / "report.md", "\n".join(lines).rstrip() + "\n")


def summary_table(results: dict[str, Any]) -> str:
    """Markdown table of the before/after measurements, with the relative change."""
    before, after = results["before"], results["after"]
    lines = ["| | before | after | change |", "|---|---:|---:|---:|"]
    lines += [_row(label, before[key], after[key], fmt) for label, key, fmt in _ROWS]
    lines.append(_row(
        "perplexity", before["perplexity"]["perplexity"], after["perplexity"]["perplexity"],
        "{:.2f}",
    ))
    if results["icl"]:
        lines += _icl_rows(results["icl"])
    return "\n".join(lines)


_ROWS = [
    ("parameters", "parameters", "{:,}"),
    ("nonzero parameters", "nonzero_parameters", "{:,}"),
    ("sparsity of decoder Linears", "linear_sparsity", "{:.1%}"),
    ("weights (MB)", "weight_bytes", "mb"),
    ("forward throughput (tokens/s)", "tokens_per_s", "{:,.0f}"),
]


def _row(label: str, before: float | None, after: float | None, fmt: str) -> str:
    if before is None or after is None:  # a perplexity that was not finite (NaN in the logits)
        return f"| {label} | {_cell(before, fmt)} | {_cell(after, fmt)} | n/a |"
    if fmt == "mb":
        before, after, fmt = before / 1e6, after / 1e6, "{:.2f}"
    if "%" in fmt:
        change = f"{100 * (after - before):+.1f} pts"
    elif before:
        change = f"{after / before - 1:+.1%}"
    else:
        change = "n/a"
    return f"| {label} | {fmt.format(before)} | {fmt.format(after)} | {change} |"


def _cell(value: float | None, fmt: str) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f}" if fmt == "mb" else fmt.format(value)


def _icl_rows(icl: dict[str, Any]) -> list[str]:
    lines = []
    for method in ICL_METHODS:
        cells = [
            f"{100 * icl[stage][method]['mean']:.1f} ± {100 * icl[stage][method]['std']:.1f}"
            for stage in ("before", "after")
        ]
        lines.append(
            f"| {icl['task']} {icl['shots']}-shot accuracy, {method} (%) | "
            f"{cells[0]} | {cells[1]} | |"
        )
    return lines


def _sparsity_section(report: dict[str, Any]) -> list[str]:
    values = [row["sparsity"] for row in report["layers"]]
    return [
        "## Sparsity of the decoder Linears after compression",
        "",
        f"{len(values)} Linears, {report['total']['params']:,} weights, "
        f"{report['total']['zeros']:,} zeros ({report['total']['sparsity']:.2%}); per Linear "
        f"min {min(values):.2%}, max {max(values):.2%}. Per-Linear counts: results.json.",
        "",
    ]


def _sweep_section(results: dict[str, Any], out: Path) -> list[str]:
    dense = results["before"]["perplexity"]["perplexity"]
    lines = [
        "## Sweep: perplexity against pruning amount",
        "",
        f"Dense model: perplexity {dense:.2f}.",
        "",
        "| method | amount | sparsity of decoder Linears | parameters | perplexity |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in results["sweep"]:
        lines.append(
            f"| {row['method']} | {row['amount']:g} | {row['linear_sparsity']:.1%} | "
            f"{row['parameters']:,} | {row['perplexity']:.2f} |"
        )
    _plot_sweep(results, out / "sweep.png")
    return lines + ["", "![perplexity against pruning amount](sweep.png)", ""]


def _plot_sweep(results: dict[str, Any], path: Path) -> None:
    """Perplexity (log scale) against amount, one line per method, from the dense model."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dense = results["before"]["perplexity"]["perplexity"]
    fig = Figure(figsize=(5.0, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method in dict.fromkeys(row["method"] for row in results["sweep"]):
        rows = sorted((r for r in results["sweep"] if r["method"] == method),
                      key=lambda r: r["amount"])
        xs = [0.0] + [100 * r["amount"] for r in rows]
        ys = [dense] + [r["perplexity"] for r in rows]
        ax.plot(xs, ys, "o-", label=method)
    ax.axhline(dense, color="grey", linestyle=":", linewidth=1, label="dense")
    ax.set_yscale("log")
    ax.set_xlabel("pruning amount (% of weights, or of MLP neurons)")
    ax.set_ylabel("perplexity")
    ax.set_title(results["model"]["spec"], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
