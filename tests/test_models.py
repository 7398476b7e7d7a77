"""Model loading: every kind of spec, and a clear error for each kind of bad one."""

from __future__ import annotations

import time

import pytest
import torch

from lmboost.errors import LmboostError, ModelLoadError, ModelNotFoundError
from lmboost.models import CATALOG, get_entry, load_model
from lmboost.models.loading import cached_gguf_dir


def test_local_directory_loads_with_tokenizer(tiny_model):
    assert tiny_model.model.config.num_hidden_layers == 2
    assert tiny_model.tokenizer.pad_token_id is not None
    assert not tiny_model.model.training


def test_bfloat16_dtype(tiny_model_dir):
    loaded = load_model(tiny_model_dir, dtype="bfloat16", device="cpu")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_unknown_dtype(tiny_model_dir):
    with pytest.raises(LmboostError, match="Unknown dtype"):
        load_model(tiny_model_dir, dtype="int3")


def test_unknown_alias_lists_known_ones():
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        get_entry("smollm3-1b")


def test_missing_file():
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_model("/nonexistent/model.gguf")
    with pytest.raises(ModelNotFoundError, match="No such file"):
        load_model("./no/such/dir")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path))


def test_corrupt_gguf_gives_clear_error_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMBOOST_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 1000)
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_model(str(bad))
    models = tmp_path / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_unreachable_hub_id_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match="unreachable"):
        load_model("some-org/some-model-that-is-not-cached")
    assert time.monotonic() - start < 30


def test_catalog_entries_are_complete():
    for alias, entry in CATALOG.items():
        assert entry.alias == alias
        assert entry.packages and entry.files and entry.licence
        assert "pip install" in entry.install_command()


@pytest.mark.slow
def test_gguf_conversion_is_cached_and_identical(smollm2):
    """The cached safetensors conversion gives the logits of the GGUF-loaded model."""
    from transformers import AutoModelForCausalLM

    gguf = get_entry("smollm2-135m-instruct").locate()
    assert cached_gguf_dir(gguf) == smollm2.path
    direct = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    ids = torch.tensor([smollm2.tokenizer("The capital of France is")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(direct(ids).logits, smollm2.model(ids).logits)
