"""Pruning, int8 quantization, saving, perplexity and the compress command, on the tiny Llama."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import CORPUS
from torch import nn
from torch.nn import functional as F

from lmboost.backends import load_backend
from lmboost.cli import main
from lmboost.compression import (
    QUANTIZERS,
    Int8WeightLinear,
    benchmark_quantizers,
    calibration_ids,
    get_pruner,
    get_quantizer,
    load_compressed,
    magnitude_prune,
    oneshot,
    parse_prune_spec,
    perplexity,
    prune_neurons,
    quantize,
    quantized_modules,
    save_compressed,
    sparsity_report,
    target_linears,
    token_ids,
    wikitext2,
)
from lmboost.compression.layerwise import activation_norms
from lmboost.compression.magnitude import smallest_mask
from lmboost.compression.neurons_act import neuron_scores, prune_neurons_act
from lmboost.compression.oneshot import (
    group_size,
    quantization_modifiers,
    run_oneshot,
    save_compressed_tensors,
)
from lmboost.compression.quantize import torchao_available
from lmboost.compression.runner import CompressConfig, parse_sweep, run_compression
from lmboost.errors import BackendError, CompressionError, DataNotFoundError, LmboostError
from lmboost.evaluation.records import read_json
from lmboost.models import load_model

TEXT = "\n".join(CORPUS)
SCHEMES = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            name == "int8-dynamic-torchao" and not torchao_available(),
            reason="torchao is not installed",
        ),
    )
    for name in QUANTIZERS
]



@pytest.fixture
def model(tiny_model):
    """A fresh copy of the tiny float model, free to change."""
    return copy.deepcopy(tiny_model.model)


@pytest.fixture(scope="module")
def ids(tiny_model) -> torch.Tensor:
    """1 x 40 token ids of the corpus."""
    return token_ids(tiny_model.tokenizer, TEXT, 40)[None]


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in target_linears(model).items()}


# --------------------------------------------------------------------------- magnitude


def test_magnitude_per_layer_is_exact_and_zeroes_the_smallest(model):
    original = _weights(model)
    magnitude_prune(model, 0.3, scope="layer")
    for name, linear in target_linears(model).items():
        w, w0 = linear.weight, original[name]
        pruned = w == 0
        assert int(pruned.sum()) == round(0.3 * w.numel())
        assert w0[pruned].abs().max() <= w0[~pruned].abs().min()
        assert torch.equal(w[~pruned], w0[~pruned])


def test_magnitude_global_is_exact_over_all_layers(model):
    original = _weights(model)
    dense_nonzero = sparsity_report(model)["nonzero_parameters"]
    magnitude_prune(model, 0.5, scope="global")
    report = sparsity_report(model)
    assert report["total"]["zeros"] == round(0.5 * report["total"]["params"])
    assert len({row["zeros"] for row in report["layers"]}) > 1  # layers differ, unlike "layer"
    pruned = torch.cat([(m.weight == 0).flatten() for m in target_linears(model).values()])
    magnitudes = torch.cat([w.abs().flatten() for w in original.values()])
    assert magnitudes[pruned].max() <= magnitudes[~pruned].min()
    assert report["nonzero_parameters"] == dense_nonzero - report["total"]["zeros"]


def test_ties_are_broken_by_position():
    masks = smallest_mask([torch.ones(2, 3), torch.ones(4)], 0.5)  # 5 of 10 equal scores
    assert masks[0].tolist() == [[True, True, True], [True, True, False]]
    assert not masks[1].any()
    one = smallest_mask([torch.tensor([2.0, 1.0, 1.0, 1.0, 3.0])], 0.4)[0]
    assert one.tolist() == [False, True, True, False, False]


# --------------------------------------------------------------------------- Wanda


def _lowest_per_row(weight: torch.Tensor, scores: torch.Tensor, sparsity: float) -> None:
    """The paper's rule, written out: zero the round(sparsity * columns) lowest-scored weights
    of every row (ties: lower column first)."""
    k = round(sparsity * weight.shape[1])
    order = torch.sort(scores, dim=1, stable=True).indices[:, :k]
    with torch.no_grad():
        weight.scatter_(1, order, 0.0)


def test_activation_norms_and_wanda_scores_equal_a_hand_calculation():
    linear = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]))
    x = torch.tensor([[[1.0, 0.0, 2.0], [2.0, 0.0, -1.0]], [[0.0, 3.0, 0.0], [0.0, 4.0, 0.0]]])
    norms = activation_norms({"l": linear}, lambda: linear(x))["l"]
    # ||X_j||_2 over the 4 tokens: sqrt(1+4), sqrt(9+16), sqrt(4+1)
    assert torch.allclose(norms, torch.tensor([math.sqrt(5), 5.0, math.sqrt(5)]))
    scores = linear.weight.detach().abs() * norms
    r5 = math.sqrt(5)
    assert torch.allclose(scores, torch.tensor([[r5, 10.0, 3 * r5], [4 * r5, 25.0, 6 * r5]]))
    _lowest_per_row(linear.weight, scores, 1 / 3)  # one weight per row: the lowest score
    assert linear.weight.tolist() == [[0.0, -2.0, 3.0], [0.0, 5.0, -6.0]]


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_oneshot_pruners_prune_every_row_to_the_exact_sparsity(method, model, tiny_model):
    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=3, seq_len=24)
    assert calibration.shape == (3, 24)
    dense = _weights(model)
    get_pruner(method).prune(model, 0.5, calibration=calibration)
    for name, linear in target_linears(model).items():
        zeros = linear.weight == 0
        if method == "wanda":  # the paper's comparison group: each output row
            assert (zeros.sum(dim=1) == 0.5 * linear.in_features).all(), name
        else:  # SparseGPT's: each block of 128 columns (here the whole matrix); its threshold
            # is inclusive (``<=`` the k-th smallest), so one more weight goes per block
            assert 0 <= zeros.sum() - 0.5 * linear.weight.numel() <= 1, name
        kept = ~zeros
        if method == "wanda":  # Wanda only zeroes; SparseGPT also updates what it keeps
            assert torch.equal(linear.weight[kept], dense[name][kept])
        else:
            assert not torch.allclose(linear.weight[kept], dense[name][kept])
    assert model.lm_head.weight.count_nonzero() == model.lm_head.weight.numel()


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_two_of_four_leaves_two_of_every_four_weights(method, model, tiny_model):
    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=2, seq_len=16)
    pruner, amount = parse_prune_spec(f"{method}:2:4")
    assert amount == "2:4"
    pruner.prune(model, amount, calibration=calibration)
    for name, linear in target_linears(model).items():
        groups = (linear.weight == 0).reshape(linear.out_features, -1, 4).sum(dim=-1)
        assert (groups == 2).all(), name


def test_llm_compressor_wanda_follows_the_paper_layer_by_layer(model, tiny_model):
    """llm-compressor's Wanda zeroes what the paper's rule zeroes, with layer l's norms taken
    from the model with layers < l already pruned: checked against full forward passes with
    hooks after each layer is pruned by the rule written out."""
    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=4, seq_len=16, seed=1)
    reference = copy.deepcopy(model)
    get_pruner("wanda").prune(model, 0.5, calibration=calibration)
    for layer in reference.model.layers:
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        norms = activation_norms(linears, lambda: reference(input_ids=calibration))
        for name, linear in linears.items():
            _lowest_per_row(linear.weight, linear.weight.detach().abs() * norms[name], 0.5)
    for ours, theirs in zip(target_linears(model).values(), target_linears(reference).values()):
        agree = (ours.weight == 0) == (theirs.weight == 0)
        assert agree.float().mean() > 0.995  # float sums in another order may swap a near-tie


# --------------------------------------------------------------------------- neurons


def test_neuron_pruning_removes_zero_neurons_without_changing_outputs(
    model, ids, tiny_model_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    dead = torch.arange(0, 64, 4)  # 16 of 64 neurons per layer: ratio 0.25
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight[dead] = 0
            layer.mlp.up_proj.weight[dead] = 0
            layer.mlp.down_proj.weight[:, dead] = 0
    expected = _logits(model, ids)
    before = sparsity_report(model)["parameters"]
    prune_neurons(model, 0.25)
    mlp = model.model.layers[0].mlp
    assert (mlp.gate_proj.out_features, mlp.up_proj.out_features) == (48, 48)
    assert mlp.down_proj.in_features == 48 and model.config.intermediate_size == 48
    assert sparsity_report(model)["parameters"] == before - 2 * 16 * 3 * 32
    assert torch.allclose(_logits(model, ids), expected, atol=1e-5)

    saved = save_compressed(model, None, tmp_path / "pruned")
    size = (saved / "model.safetensors").stat().st_size
    assert size < (Path(tiny_model_dir) / "model.safetensors").stat().st_size
    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    assert reloaded.config.intermediate_size == 48
    assert torch.equal(_logits(reloaded, ids), _logits(model, ids))


def test_neuron_pruning_of_random_weights_runs(model, ids):
    prune_neurons(model, 0.5)
    assert model.model.layers[1].mlp.down_proj.weight.shape == (32, 32)
    assert torch.isfinite(_logits(model, ids)).all()



# --------------------------------------------------------------------------- neurons-act


def test_activation_neuron_scores_equal_a_hand_calculation(model):
    """score_n = ||a_n||_2 * ||W_down[:, n]||_2 with a = silu(gate(x)) * up(x) over all tokens,
    which is the Frobenius norm of neuron n's contribution W_down[:, n] a_n^T."""
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    norms = activation_norms({"down": mlp.down_proj}, lambda: mlp(x))["down"]
    scores = neuron_scores(mlp.down_proj, norms)
    with torch.no_grad():
        tokens = x.reshape(10, 32)
        a = F.silu(tokens @ mlp.gate_proj.weight.T) * (tokens @ mlp.up_proj.weight.T)  # 10 x 64
        w = mlp.down_proj.weight  # 32 x 64
        by_hand = torch.tensor([
            math.sqrt(sum(a[t, n].item() ** 2 for t in range(10)))
            * math.sqrt(sum(w[i, n].item() ** 2 for i in range(32)))
            for n in range(64)
        ])
        contribution = torch.stack([torch.outer(w[:, n], a[:, n]).norm() for n in range(64)])
    assert torch.allclose(scores, by_hand, rtol=1e-5)
    assert torch.allclose(scores, contribution, rtol=1e-5)


def test_neurons_act_removes_the_lowest_scored_neurons_layer_by_layer(model, tiny_model):
    """In each layer the 16 of 64 neurons of lowest score go, scored on the MLP inputs of the
    model whose earlier layers are already pruned; what stays is exactly the kept rows of
    gate/up and columns of down."""
    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=3, seq_len=16, seed=1)
    dense = copy.deepcopy(model)
    prune_neurons_act(model, 0.25, calibration=calibration, batch_size=2)
    by_weight_norm = prune_neurons(copy.deepcopy(dense), 0.25)
    differs = False
    inputs: list[torch.Tensor] = []
    for layer, original, other in zip(
        model.model.layers, dense.model.layers, by_weight_norm.model.layers
    ):
        inputs.clear()
        handle = layer.mlp.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
        with torch.no_grad():
            model(input_ids=calibration)
        handle.remove()
        x = inputs[0].reshape(-1, 32)
        gate, up, down = (original.mlp.gate_proj.weight, original.mlp.up_proj.weight,
                          original.mlp.down_proj.weight)
        with torch.no_grad():
            scores = (F.silu(x @ gate.T) * (x @ up.T)).norm(dim=0) * down.norm(dim=0)
        order = torch.sort(scores).indices
        removed, kept = order[:16], order[16:].sort().values
        assert scores[kept].min() > scores[removed].max()  # a clear boundary
        assert torch.equal(layer.mlp.gate_proj.weight, gate[kept])
        assert torch.equal(layer.mlp.up_proj.weight, up[kept])
        assert torch.equal(layer.mlp.down_proj.weight, down[:, kept])
        differs |= not torch.equal(layer.mlp.up_proj.weight, other.mlp.up_proj.weight)
    assert differs  # the activations change the choice


def test_neurons_act_model_is_smaller_and_reloads(model, ids, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=2, seq_len=16)
    before = sparsity_report(model)["parameters"]
    prune_neurons_act(model, 0.25, calibration=calibration)
    assert model.config.intermediate_size == 48
    for layer in model.model.layers:
        assert layer.mlp.down_proj.weight.shape == (32, 48)
        assert layer.mlp.gate_proj.weight.shape == layer.mlp.up_proj.weight.shape == (48, 32)
    assert sparsity_report(model)["parameters"] == before - 2 * 16 * 3 * 32
    saved = save_compressed(model, tiny_model.tokenizer, tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    assert reloaded.config.intermediate_size == 48
    assert torch.equal(_logits(reloaded, ids), _logits(model, ids))


def test_neurons_act_spec_and_cli(tiny_model_dir, tmp_path, capsys):
    pruner, amount = parse_prune_spec("neurons-act:0.25")
    assert (pruner.name, pruner.prune, pruner.needs_calibration, amount) == (
        "neurons-act", prune_neurons_act, True, 0.25
    )
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    code = main([
        "compress", "--model", tiny_model_dir, "--prune", "neurons-act:0.25", "--ppl-text",
        str(text), "--ppl-tokens", "60", "--ppl-window", "32", "--ppl-stride", "16",
        "--calib-text", str(text), "--calib-samples", "2", "--calib-len", "16", "--out", str(out),
    ])
    assert code == 0, capsys.readouterr().err
    results = read_json(out / "results.json")
    assert results["calibration_text"] == str(text)
    assert results["after"]["parameters"] < results["before"]["parameters"]
    assert load_compressed(out / "model").model.config.intermediate_size == 48


def test_neurons_act_refuses_bad_amounts_and_calibration(model):
    calibration = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(LmboostError, match="would remove every MLP neuron"):
        prune_neurons_act(model, 0.999, calibration=calibration)
    with pytest.raises(LmboostError, match="neurons-act needs calibration token ids"):
        prune_neurons_act(model, 0.25, calibration=torch.zeros(0, 4, dtype=torch.long))


# --------------------------------------------------------------------------- quantization


def test_int8_weight_linear_error_is_within_half_a_step():
    """|W_ij - s_i q_ij| <= s_i / 2 with s_i = max_j |W_ij| / 127, so for every output
    |y_i - y^_i| <= s_i / 2 * ||x||_1 (plus float32 rounding)."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    with torch.no_grad():
        linear.weight[:, :8] = 0  # pruned weights stay exactly zero
        linear.weight[3] = 0  # an all-zero row gets no NaN scale
    x = torch.randn(5, 64)
    quantized = Int8WeightLinear.from_linear(linear)
    assert (quantized.weight_int8[:, :8] == 0).all() and (quantized.weight_int8[3] == 0).all()
    step = linear.weight.abs().amax(dim=1) / 127
    bound = step[None, :] / 2 * x.abs().sum(dim=1, keepdim=True) + 1e-5
    with torch.no_grad():
        assert ((quantized(x) - linear(x)).abs() <= bound).all()


def test_int8_dynamic_linear_error_is_within_its_bound():
    """Weights: per-channel symmetric, |dW_ij| <= s_i / 2, s_i <= max_j |W_ij| / 127.
    Activations: per batch, range [min(x, 0), max(x, 0)] on at least 127 steps, so
    |dx_j| <= s_x / 2. Then |dy_i| <= s_i / 2 * ||x||_1 + s_x / 2 * ||W^_i||_1."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 16)
    x = torch.randn(5, 64)
    with torch.no_grad():
        expected = linear(x)
    model = nn.Sequential(linear)
    get_quantizer("int8-dynamic").apply(model, ["0"])
    step_w = linear.weight.abs().amax(dim=1) / 127
    step_x = (x.max().clamp(min=0) - x.min().clamp(max=0)) / 127
    rows = linear.weight.abs().sum(dim=1) + 64 * step_w / 2  # ||W^_i||_1 <= ||W_i||_1 + n s_i/2
    bound = (step_w[None, :] * x.abs().sum(dim=1, keepdim=True) + step_x * rows[None, :]) / 2
    with torch.no_grad():
        assert ((model(x) - expected).abs() <= bound + 1e-5).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_quantized_model_is_close_to_float_and_round_trips(scheme, model, ids, tiny_model,
                                                          tmp_path):
    """Each int8 weight is within 1/254 of its row's largest weight, each int8 activation
    within 1/254 of its batch's range (the Linear tests above); on this 2-layer model such
    per-Linear errors add up to about 1% of the logits' norm, so a 5% bound holds with room
    while a real bug (wrong scale, transposed or lost weights) gives errors near 100%."""
    reference = _logits(model, ids)
    quantize(model, scheme)
    assert len(quantized_modules(model)) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    logits = _logits(model, ids)
    assert (logits - reference).norm() / reference.norm() < 0.05

    saved = save_compressed(model, tiny_model.tokenizer, tmp_path / scheme)
    meta = read_json(saved / "compression.json")
    assert set(meta["modules"].values()) == {scheme} and len(meta["modules"]) == 14
    assert not list(saved.glob("*.bin")) and not list(saved.glob("*.pt"))
    reloaded = load_compressed(saved)
    assert torch.equal(_logits(reloaded.model, ids), logits)
    # every command loads it by path, as a user passes it to --model
    backend = load_backend(str(saved), device="cpu")
    assert torch.equal(_logits(backend.model, ids), logits)
    with pytest.raises(BackendError, match="vLLM does not load"):
        load_backend(str(saved), "vllm")


def test_pruned_model_round_trips_as_a_transformers_directory(model, ids, tiny_model, tmp_path):
    from lmboost.models import load_model

    magnitude_prune(model, 0.5)
    saved = save_compressed(model, tiny_model.tokenizer, tmp_path / "pruned")
    assert not (saved / "compression.json").exists()
    reloaded = load_model(str(saved), device="cpu").model
    assert sparsity_report(reloaded)["total"]["sparsity"] == 0.5
    assert torch.equal(_logits(reloaded, ids), _logits(model, ids))


def test_benchmark_compares_the_schemes(tiny_model, ids):
    results = benchmark_quantizers(tiny_model.model, ids, ["int8-dynamic", "int8-weight"], 1)
    assert list(results) == ["float", "int8-dynamic", "int8-weight"]
    assert all(r["tokens_per_s"] > 0 and r["max_rel_error"] < 0.1 for r in results.values())
    assert all(m.weight.dtype == torch.float32 for m in target_linears(tiny_model.model).values())


# --------------------------------------------------------------------------- perplexity


def test_perplexity_is_exp_of_the_mean_token_nll(tiny_model):
    model = tiny_model.model
    text_ids = token_ids(tiny_model.tokenizer, TEXT, 30)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=text_ids[None]).logits[0, :-1], dim=-1)
    nll = -logp.gather(1, text_ids[1:, None])[:, 0]
    whole = perplexity(model, text_ids, window=64, stride=32)
    assert whole["tokens"] == 29 and whole["windows"] == 1
    assert whole["perplexity"] == pytest.approx(math.exp(nll.mean().item()), rel=1e-5)

    # Two disjoint windows of 15 tokens: the first token of each has no context.
    halves = [text_ids[:15], text_ids[15:]]
    by_hand = []
    for half in halves:
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=half[None]).logits[0, :-1], dim=-1)
        by_hand.append(-lp.gather(1, half[1:, None])[:, 0])
    disjoint = perplexity(model, text_ids, window=15, stride=15)
    assert disjoint["tokens"] == 28 and disjoint["windows"] == 2
    assert disjoint["perplexity"] == pytest.approx(math.exp(torch.cat(by_hand).mean()), rel=1e-5)

    strided = perplexity(model, text_ids, window=16, stride=4)
    assert strided["tokens"] == 29


def test_wikitext2_test_text_is_raw_with_unix_newlines():
    try:
        text = wikitext2("test")
    except DataNotFoundError:
        pytest.skip("the shared data folder is not available")
    assert text.lstrip().startswith("= Robert Boulter =") and "\r" not in text


# --------------------------------------------------------------------------- runner, CLI


def test_compress_neurons_makes_a_smaller_model(tiny_model_dir, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    results = run_compression(
        CompressConfig(
            model=tiny_model_dir, prune="neurons:0.25", ppl_text=text, ppl_tokens=60,
            ppl_window=32, ppl_stride=16, speed_len=16, speed_repeats=1, out=tmp_path / "run",
        ),
        progress=False,
    )
    before, after = results["before"], results["after"]
    assert after["parameters"] < before["parameters"]
    assert after["weight_bytes"] < before["weight_bytes"]
    assert after["perplexity"]["tokens"] == before["perplexity"]["tokens"] == 59
    assert load_compressed(tmp_path / "run" / "model").model.config.intermediate_size == 48


def test_cli_end_to_end(tiny_model_dir, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    code = main([
        "compress", "--model", tiny_model_dir, "--prune", "wanda:0.5", "--quantize",
        "int8-weight", "--sweep", "magnitude,wanda:0.25,0.5", "--ppl-text", str(text),
        "--ppl-tokens", "60", "--ppl-window", "32", "--ppl-stride", "16", "--calib-text",
        str(text), "--calib-samples", "2", "--calib-len", "16", "--out", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| perplexity |" in printed and "report:" in printed
    report = (out / "report.md").read_text()
    assert "| sparsity of decoder Linears | 0.0% | 50.0% |" in report
    assert "sweep.png" in report and (out / "sweep.png").stat().st_size > 0
    results = read_json(out / "results.json")
    assert [(r["method"], r["amount"]) for r in results["sweep"]] == [
        ("magnitude", 0.25), ("magnitude", 0.5), ("wanda", 0.25), ("wanda", 0.5)
    ]
    assert results["sweep"][1]["linear_sparsity"] == 0.5
    assert results["after"]["weight_bytes"] < results["before"]["weight_bytes"]
    assert read_json(out / "model" / "compression.json")["modules"]


@pytest.mark.parametrize(("scheme", "bound", "stored"), [
    ("w8a8", 0.05, {"weight": torch.int8}),
    ("w4a16", 0.25, {"weight_packed": torch.int32}),
])
def test_oneshot_quantization_is_close_to_float_and_round_trips(
    scheme, bound, stored, model, ids, tiny_model, tmp_path
):
    """llm-compressor's schemes: logits near the float model's, integer weights on disk, and
    the saved compressed-tensors folder reloads (through lmboost's loader) to the same logits
    as the fake-quantized model in memory."""
    from safetensors import safe_open

    reference = _logits(model, ids)
    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=4, seq_len=16)
    assert group_size(model) == 32  # the tiny model's widths are 32 and 64
    run_oneshot(model, calibration, quantization_modifiers(scheme, model))
    quantized = _logits(model, ids)
    error = (quantized - reference).abs().max() / reference.abs().max()
    assert 0 < error < bound, f"{scheme}: relative error {error:.4f}"
    saved = save_compressed_tensors(model, tiny_model.tokenizer, tmp_path / scheme)
    with safe_open(saved / "model.safetensors", "pt") as f:
        dtypes = {k.rsplit(".", 1)[1]: f.get_slice(k).get_dtype() for k in f.keys()  # noqa: SIM118
                  if ".layers.0.mlp.up_proj." in k}
    for name, dtype in stored.items():
        assert dtypes[name] == str(dtype).removeprefix("torch.").upper().replace("INT", "I"), dtypes
    reloaded = load_model(str(saved), device="cpu")
    assert torch.allclose(_logits(reloaded.model, ids), quantized, atol=1e-5)


@pytest.fixture
def tiny_gemma(tiny_model, tmp_path):
    """A 2-layer Gemma 3 with trained-looking norms (not the zero init), saved beside its
    tokenizer (llm-compressor reads the config there)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = tiny_model.tokenizer
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    gemma = Gemma3ForCausalLM(config).eval()
    for name, p in gemma.named_parameters():
        if name.endswith("norm.weight"):
            p.data.uniform_(-0.5, 0.5)
    gemma.save_pretrained(tmp_path / "gemma")
    tok.save_pretrained(tmp_path / "gemma")
    return Gemma3ForCausalLM.from_pretrained(tmp_path / "gemma").eval()


def test_smoothquant_on_gemma3_is_exact_and_w8a8_close_to_float(tiny_gemma, tiny_model, ids):
    """Gemma 3's MLP reads pre_feedforward_layernorm, not post_attention_layernorm as in
    llm-compressor 0.14's mappings for it (logits changed by 1.0 of the largest on
    Gemma-3-270M, refused): with lmboost's mappings smoothing is exact and W8A8 stays close."""
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    tok = tiny_model.tokenizer
    reference = _logits(tiny_gemma, ids)
    calibration = calibration_ids(tok, TEXT, n_samples=4, seq_len=16)
    smoothed = copy.deepcopy(tiny_gemma)
    smoothing = quantization_modifiers("w8a8", smoothed)[0]
    assert isinstance(smoothing, SmoothQuantModifier)
    run_oneshot(smoothed, calibration, [smoothing], tok)
    norms = {n: p for n, p in smoothed.named_parameters() if n.endswith("layernorm.weight")}
    before = dict(tiny_gemma.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in norms.items())  # it did rescale
    assert torch.allclose(_logits(smoothed, ids), reference, atol=1e-4)
    run_oneshot(tiny_gemma, calibration, quantization_modifiers("w8a8", tiny_gemma), tok)
    error = (_logits(tiny_gemma, ids) - reference).abs().max() / reference.abs().max()
    assert 0 < error < 0.05, error


def test_smoothquant_that_changes_the_model_is_refused(model, tiny_model):
    """Smoothing must leave outputs unchanged before anything is rounded: a mapping that folds
    input_layernorm's scales into the MLP (which reads another norm) is refused, not saved."""
    from llmcompressor.modifiers.transform import SmoothQuantModifier

    wrong = SmoothQuantModifier(smoothing_strength=0.8, mappings=[
        [["re:.*gate_proj$", "re:.*up_proj$"], "re:.*input_layernorm$"]])
    calibration = calibration_ids(tiny_model.tokenizer, TEXT, n_samples=4, seq_len=16)
    with pytest.raises(CompressionError, match="SmoothQuant changed this LlamaForCausalLM"):
        run_oneshot(model, calibration, [wrong])


def test_cli_llm_compressor_sparse_and_quantized(tiny_model_dir, tmp_path):
    """2:4 SparseGPT then GPTQ int4 in one recipe; the saved model reloads to the perplexity
    measured on the model in memory."""
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    code = main([
        "compress", "--model", tiny_model_dir, "--prune", "sparsegpt:2:4", "--quantize",
        "w4a16", "--ppl-text", str(text), "--ppl-tokens", "60", "--ppl-window", "32",
        "--ppl-stride", "16", "--calib-text", str(text), "--calib-samples", "2",
        "--calib-len", "16", "--out", str(out),
    ])
    assert code == 0
    results = read_json(out / "results.json")
    assert results["after"]["linear_sparsity"] >= 0.5
    assert results["after"]["weight_bytes"] == results["after"]["disk_bytes"]
    config = read_json(out / "model" / "config.json")["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    reloaded = load_model(str(out / "model"), device="cpu")
    ppl_ids = token_ids(reloaded.tokenizer, text, 60)
    again = perplexity(reloaded.model, ppl_ids, window=32, stride=16)["perplexity"]
    assert again == pytest.approx(results["after"]["perplexity"]["perplexity"], rel=1e-4)


def test_recovery_lora_lowers_the_perplexity_neuron_pruning_raised(tiny_model_dir, tmp_path):
    """neurons-act 25% with and without a LoRA recovery on the same text (a large learning rate
    so that a few steps show): recovery trains, merges and lowers the perplexity."""
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    runs = {}

    def run(name: str, steps: int, *flags: str) -> dict:
        assert main([
            "compress", "--model", tiny_model_dir, "--prune", "neurons-act:0.25",
            "--recover-steps", str(steps), "--recover-lr", "1e-2", "--ppl-text", str(text),
            "--ppl-tokens", "60", "--ppl-window", "32", "--ppl-stride", "16", "--calib-text",
            str(text), "--calib-samples", "2", "--calib-len", "16", "--out",
            str(tmp_path / name), *flags,
        ]) == 0
        return read_json(tmp_path / name / "results.json")

    for name, steps in (("plain", 0), ("recovered", 6)):
        runs[name] = run(name, steps)
    # the same command again in the same folder reuses the finished recovery
    again = run("recovered", 6)
    assert again["recovery"] == runs["recovered"]["recovery"]
    assert again["after"]["perplexity"] == runs["recovered"]["after"]["perplexity"]
    # quantization comes after the recovery, so the saved model is the quantized one
    quantized = run("quantized", 6, "--quantize", "w4a16")
    assert quantized["recovery"]["steps"] == 6
    saved = read_json(tmp_path / "quantized" / "model" / "config.json")
    assert saved["quantization_config"]["quant_method"] == "compressed-tensors"
    recovery = runs["recovered"]["recovery"]
    assert runs["plain"]["recovery"] is None and recovery["steps"] == 6
    assert recovery["trainable_parameters"] > 0
    assert runs["recovered"]["after"]["parameters"] == runs["plain"]["after"]["parameters"]
    ppl = {k: r["after"]["perplexity"]["perplexity"] for k, r in runs.items()}
    assert ppl["recovered"] < ppl["plain"], ppl
    assert "recovery: LoRA" in (tmp_path / "recovered" / "report.md").read_text()


def test_missing_llm_compressor_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(oneshot, "llmcompressor_available", lambda: False)
    for settings in ({"prune": "sparsegpt:0.5"}, {"quantize": "w8a8"},
                     {"sweep": "magnitude,sparsegpt:0.5"}):
        with pytest.raises(LmboostError, match=r"pip install 'lmboost\[compress\]'"):
            CompressConfig(out=tmp_path, **settings).validate()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_prune_spec("magnitude:1.5"), r"in \[0, 1\)"),
        (lambda: parse_prune_spec("foo:0.5"), "Unknown pruning method 'foo'.*magnitude"),
        (lambda: parse_prune_spec("wanda"), "METHOD:AMOUNT"),
        (lambda: parse_prune_spec("wanda:half"), "not 'half'"),
        (lambda: parse_prune_spec("neurons-act:1.5"), r"neurons-act amount.*in \[0, 1\)"),
        (lambda: parse_prune_spec("neurons-act:-0.1"), r"in \[0, 1\)"),
        (lambda: parse_prune_spec("neurons-act:most"), "not 'most'"),
        (lambda: get_quantizer("int4"), "Unknown quantization 'int4'.*int8-weight"),
        (lambda: parse_prune_spec("magnitude:2:4"), "N:M patterns are for wanda, sparsegpt"),
        (lambda: parse_prune_spec("sparsegpt:4:2"), "0 < N < M"),
        (lambda: parse_prune_spec("wanda:2:x"), "N:M"),
        (lambda: CompressConfig(out=Path("x"), quantize="int4").validate(), "w8a8.*int8-weight"),
        (lambda: CompressConfig(out=Path("x"), quantize="w8a8", recover_steps=5).validate(),
         "recover_steps needs a pruning spec"),
        (lambda: CompressConfig(out=Path("x"), prune="wanda:0.5", recover_steps=5).validate(),
         "after structured pruning.*would fill the zeroed weights"),
        (lambda: CompressConfig(
            out=Path("x"), quantize="int8-dynamic", device="cuda", dtype="float32").validate(),
         "CPU kernels only"),
        (lambda: parse_sweep("magnitude"), "METHODS:AMOUNTS"),
        (lambda: magnitude_prune(nn.Linear(2, 2), 0.5), "no list of decoder layers"),
    ],
)
def test_bad_specs_are_clear_errors(call, message):
    with pytest.raises(LmboostError, match=message):
        call()


@pytest.mark.skipif(torchao_available(), reason="torchao is installed")
def test_torchao_scheme_without_torchao_says_how_to_install_it(model, tmp_path):
    with pytest.raises(LmboostError, match="pip install torchao"):
        quantize(model, "int8-dynamic-torchao")
    with pytest.raises(LmboostError, match="pip install torchao"):
        CompressConfig(quantize="int8-dynamic-torchao", out=tmp_path).validate()


def test_cli_reports_bad_specs(tiny_model_dir, tmp_path, capsys):
    for flags, message in (
        (["--prune", "magnitude:1.5"], "[0, 1)"),
        (["--prune", "foo:0.5"], "Unknown pruning method 'foo'"),
        (["--prune", "neurons-act:1"], "[0, 1)"),
        (["--quantize", "int4"], "Unknown quantization 'int4'"),
        ([], "Nothing to do"),
    ):
        assert main(["compress", "--model", tiny_model_dir, *flags, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
