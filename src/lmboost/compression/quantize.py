"""Int8 quantization of the decoder Linears, three ways, each a :class:`Quantizer`.

``int8-weight``    per-output-channel symmetric int8 weights, W ~ q * s with s_i = max_j |W_ij| /
                   127, in :class:`Int8WeightLinear`, which dequantizes on the fly and multiplies
                   in the activations' dtype. Saves memory and disk, not time. (torch's
                   ``_weight_int8pack_mm`` CPU kernel was ~50x slower than dequantize + matmul
                   for a 256-token batch on torch 2.13 and crashed on bfloat16 inputs of some
                   shapes, so it is not used.)
``int8-dynamic``   ``torch.ao.quantization.quantize_dynamic`` with per-channel int8 weights and
                   activations quantized per batch at run time (fbgemm/x86 int8 matmuls). On torch
                   2.13 it still works but ``torch.ao.quantization`` warns that it is deprecated in
                   favour of torchao; those warnings are silenced here. float32 models only.
``int8-dynamic-torchao``  the same scheme through torchao's
                   ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` (per-row int8
                   weights, per-token int8 activations); needs ``pip install torchao``.

Each quantizer also exports a quantized module's tensors (``weight_int8``, ``scale``, maybe
``zero_point`` and ``bias``) and restores them, which is how :mod:`lmboost.compression.save`
stores every scheme in safetensors without pickles. :func:`benchmark_quantizers` compares them
on one batch.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lmboost.backends.hf import HFBackend
from lmboost.compression.perplexity import forward_throughput
from lmboost.compression.sparsity import target_linears
from lmboost.errors import CompressionError, DependencyError


class Int8WeightLinear(nn.Module):
    """A Linear whose weight is stored as int8 rows ``weight_int8`` times float32 ``scale``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        weight = torch.zeros(out_features, in_features, dtype=torch.int8)
        self.register_buffer("weight_int8", weight)
        self.register_buffer("scale", torch.ones(out_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8WeightLinear:
        """Quantize ``linear``: s_i = max_j |W_ij| / 127, q_ij = round(W_ij / s_i), |q| <= 127."""
        weight = linear.weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny)
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        module.weight_int8 = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        module.scale = scale
        module.bias = linear.bias
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.weight_int8.float() * self.scale[:, None]).to(x.dtype)
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-row"


class Quantizer:
    """An int8 scheme: apply it to named Linears, recognise its modules, export and restore their
    quantized tensors."""

    name: str = ""
    description: str = ""

    def apply(self, model: nn.Module, names: Iterable[str]) -> None:
        """Replace (or convert) the Linears ``names`` of ``model`` in place."""
        raise NotImplementedError

    def is_quantized(self, module: nn.Module) -> bool:
        """Whether ``module`` is a Linear quantized by this scheme."""
        raise NotImplementedError

    def export(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """The tensors that fully describe a quantized module."""
        raise NotImplementedError

    def restore(self, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        """Write ``tensors`` (from :meth:`export`) into a module this scheme quantized."""
        raise NotImplementedError


class Int8WeightOnly(Quantizer):
    name = "int8-weight"
    description = "int8 per-channel weights, dequantized on the fly (any dtype and device)"

    def apply(self, model: nn.Module, names: Iterable[str]) -> None:
        for name in names:
            parent, attr = _parent(model, name)
            setattr(parent, attr, Int8WeightLinear.from_linear(getattr(parent, attr)))

    def is_quantized(self, module: nn.Module) -> bool:
        return isinstance(module, Int8WeightLinear)

    def export(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in module.state_dict().items()}

    def restore(self, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        module.load_state_dict(tensors)


class Int8DynamicTorch(Quantizer):
    name = "int8-dynamic"
    description = "torch.ao quantize_dynamic: int8 weights and activations, CPU, float32"

    def apply(self, model: nn.Module, names: Iterable[str]) -> None:
        _require_float32(model, self.name)
        with _quiet_torch_ao():
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            spec = dict.fromkeys(names, per_channel_dynamic_qconfig)
            quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)

    def is_quantized(self, module: nn.Module) -> bool:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

        return isinstance(module, DynamicQuantizedLinear)

    def export(self, module: nn.Module) -> dict[str, torch.Tensor]:
        weight = module.weight()
        tensors = {
            "weight_int8": weight.int_repr(),
            "scale": weight.q_per_channel_scales(),
            "zero_point": weight.q_per_channel_zero_points(),
        }
        if module.bias() is not None:
            tensors["bias"] = module.bias().detach()
        return tensors

    def restore(self, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        with _quiet_torch_ao():
            weight = torch._make_per_channel_quantized_tensor(
                tensors["weight_int8"], tensors["scale"], tensors["zero_point"], 0
            )
            module.set_weight_bias(weight, tensors.get("bias"))


class Int8DynamicTorchao(Quantizer):
    name = "int8-dynamic-torchao"
    description = "torchao Int8DynamicActivationInt8WeightConfig (pip install torchao)"

    def apply(self, model: nn.Module, names: Iterable[str]) -> None:
        torchao = _import_torchao()
        wanted = set(names)
        torchao.quantization.quantize_(
            model,
            torchao.quantization.Int8DynamicActivationInt8WeightConfig(),
            filter_fn=lambda module, fqn: fqn in wanted,
        )

    def is_quantized(self, module: nn.Module) -> bool:
        weight = getattr(module, "weight", None)
        return isinstance(module, nn.Linear) and type(weight).__module__.startswith("torchao.")

    def export(self, module: nn.Module) -> dict[str, torch.Tensor]:
        weight = module.weight
        tensors = {"weight_int8": weight.qdata, "scale": weight.scale}
        if getattr(weight, "zero_point", None) is not None:
            tensors["zero_point"] = weight.zero_point
        if module.bias is not None:
            tensors["bias"] = module.bias.detach()
        return tensors

    def restore(self, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            module.weight.qdata.copy_(tensors["weight_int8"])
            module.weight.scale.copy_(tensors["scale"])
            if "zero_point" in tensors:
                module.weight.zero_point.copy_(tensors["zero_point"])
            if "bias" in tensors:
                module.bias.copy_(tensors["bias"])


QUANTIZERS: dict[str, Quantizer] = {
    q.name: q for q in (Int8DynamicTorch(), Int8WeightOnly(), Int8DynamicTorchao())
}


def get_quantizer(name: str) -> Quantizer:
    """The quantizer registered as ``name``; a LmboostError listing the choices otherwise."""
    quantizer = QUANTIZERS.get(name.strip().lower())
    if quantizer is None:
        raise CompressionError(
            f"Unknown quantization {name!r}; choose one of: {', '.join(QUANTIZERS)}."
        )
    return quantizer


def quantize(model: nn.Module, method: str, *, include_head: bool = False) -> nn.Module:
    """Quantize the decoder Linears (and the LM head with ``include_head``) of ``model`` in
    place with the scheme ``method`` (a :data:`QUANTIZERS` name); returns ``model``."""
    quantizer = get_quantizer(method)
    quantizer.apply(model, list(target_linears(model, include_head)))
    return model


def quantized_modules(model: nn.Module) -> dict[str, Quantizer]:
    """Every quantized module of ``model`` by name, with the scheme that quantized it."""
    found = {}
    for name, module in model.named_modules():
        for quantizer in QUANTIZERS.values():
            if quantizer.is_quantized(module):
                found[name] = quantizer
    return found


def benchmark_quantizers(
    model: nn.Module, ids: torch.Tensor, methods: Iterable[str] | None = None, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """Forward throughput (tokens/s) and logit error of each scheme on the B x L batch ``ids``.

    Each scheme runs on its own deep copy of the float ``model`` (left unchanged). Returns
    ``{name: {"tokens_per_s", "max_rel_error"}}`` with "float" first; ``max_rel_error`` is
    max |logits - float logits| / max |float logits|. ``methods`` defaults to every scheme whose
    dependencies are installed.
    """
    if methods is None:
        methods = [m for m in QUANTIZERS if m != "int8-dynamic-torchao" or torchao_available()]
    reference = HFBackend.of_module(model).logits(ids)
    results = {"float": {"tokens_per_s": forward_throughput(model, ids, repeats),
                         "max_rel_error": 0.0}}
    for method in methods:
        quantized = quantize(copy.deepcopy(model), method)
        logits = HFBackend.of_module(quantized).logits(ids)
        results[method] = {
            "tokens_per_s": forward_throughput(quantized, ids, repeats),
            "max_rel_error": float((logits - reference).abs().max() / reference.abs().max()),
        }
    return results


def torchao_available() -> bool:
    """Whether torchao is installed (it is optional)."""
    return importlib.util.find_spec("torchao") is not None


def _import_torchao() -> Any:
    """torchao, or a LmboostError saying how to install it."""
    if not torchao_available():
        raise DependencyError(
            "int8-dynamic-torchao needs torchao: pip install torchao (it must match your torch)."
        )
    import torchao.quantization

    return torchao


@contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    """Silence torch.ao's deprecation warnings for quantize_dynamic and quantized tensors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated")
        yield


def _require_float32(model: nn.Module, method: str) -> None:
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32:
        raise CompressionError(
            f"{method} needs a float32 model, not {dtype}: load it with float32."
        )


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding submodule ``name``, and the attribute it is stored under."""
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr
