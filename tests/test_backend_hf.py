"""The HF backend behind the Backend interface: selection, placement, memory back-off, rolling
log-likelihoods and embeddings equal to plain forwards."""

from __future__ import annotations

import math

import pytest
import torch

from lmboost.backends import Backend, BackendError, as_backend, load_backend
from lmboost.backends.hf import HFBackend
from lmboost.errors import LmboostError
from lmboost.generation import GenerationConfig, generate
from lmboost.models.loading import resolve_device, resolve_dtype
from lmboost.scoring import Scorer, reference_loglikelihood_tokens

CONTEXTS = [f"Review: {q}\nSentiment:" for q in ("a great film", "dull", "far too long", "fine")]
WORDS = [" positive", " negative"]


@pytest.fixture
def oom_above(tiny_model):
    """Make every forward of more than ``limit`` rows (or ``tokens`` rows x tokens) fail as
    CUDA's allocator does."""
    handles = []

    def install(limit: int, *, tokens: int | None = None) -> None:
        def hook(module, args, kwargs):
            rows, length = kwargs["input_ids"].shape
            if rows > limit or (tokens is not None and rows * length > tokens):
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

        body = tiny_model.model.base_model  # every forward of the model runs through its body
        handles.append(body.register_forward_pre_hook(hook, with_kwargs=True))

    yield install
    for handle in handles:
        handle.remove()


def test_backends_are_chosen_by_name(tiny_model_dir, tiny_model):
    backend = load_backend(tiny_model_dir, "hf", device="cpu", batch_size=3)
    assert isinstance(backend, Backend) and backend.name == "hf" and backend.batch_size == 3
    assert backend.describe() == {
        "backend": "hf", "model": tiny_model_dir, "dtype": "float32", "device": "cpu",
    }
    assert as_backend(backend) is backend
    assert isinstance(as_backend(tiny_model), HFBackend) and Scorer is HFBackend
    with pytest.raises(BackendError, match="Unknown backend 'tgi'. Choose one of: hf, vllm"):
        load_backend(tiny_model_dir, "tgi")
    with pytest.raises(BackendError, match="use --backend vllm"):
        load_backend(tiny_model_dir, "hf", tensor_parallel_size=2)


def test_devices_and_dtypes_this_machine_lacks_are_clear_errors():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("balanced")
    assert resolve_dtype("auto") == "float32" and resolve_dtype("bfloat16") == "bfloat16"
    with pytest.raises(LmboostError, match="no CUDA GPU. Use --device cpu"):
        resolve_device("cuda:7")
    with pytest.raises(LmboostError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(LmboostError, match="Unknown dtype 'fp8'"):
        resolve_dtype("fp8")


def test_scoring_backs_off_when_a_batch_runs_out_of_memory(tiny_model, oom_above):
    """A batch too big for memory is halved until it fits: here any forward larger than the
    largest one of scoring a context alone fails."""
    from lmboost.backends.hf.calls import recorded_forwards

    expected = Scorer(tiny_model, batch_size=8).score_choices(CONTEXTS, WORDS)
    alone = Scorer(tiny_model, batch_size=1)
    alone.score_choices(CONTEXTS[:2], [" a"])  # first-use probes
    with recorded_forwards(tiny_model.model.base_model) as shapes:
        alone.score_choices(CONTEXTS, WORDS)
    oom_above(8, tokens=max(rows * tokens for rows, tokens in shapes))
    backend = Scorer(tiny_model, batch_size=8)
    with pytest.warns(UserWarning, match="Out of memory at batch size 8: continuing at 4"):
        got = backend.score_choices(CONTEXTS, WORDS)
    assert backend.batch_size == 1
    assert got == pytest.approx(expected, abs=1e-5)


def test_generation_backs_off_when_a_batch_runs_out_of_memory(tiny_model, oom_above):
    prompts = ["Review: a great movie", "Article: markets fell", "Hi", "Question: who"]
    config = GenerationConfig(max_new_tokens=4)
    expected = generate(tiny_model, prompts, config, batch_size=4)
    oom_above(2)
    with pytest.warns(UserWarning, match="Out of memory at batch size 4: continuing at 2"):
        assert generate(tiny_model, prompts, config, batch_size=4) == expected


def test_out_of_memory_at_batch_size_one_is_raised(tiny_model, oom_above):
    oom_above(0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        Scorer(tiny_model, batch_size=1).score_choices(CONTEXTS[:1], WORDS)


def test_rolling_loglikelihood_equals_a_plain_forward(tiny_model):
    texts = ["Review: a great movie\nSentiment: positive", "markets fell as stocks slid"]
    backend = HFBackend(tiny_model)
    results = backend.loglikelihood_rolling(texts)
    for text, result in zip(texts, results):
        ids = tiny_model.tokenizer(text)["input_ids"]
        (plain,) = reference_loglikelihood_tokens(
            tiny_model.model, [_request(ids[:1], ids[1:])]
        )
        assert result.tokens == len(ids) - 1
        assert result.logprob == pytest.approx(plain.logprob, abs=1e-4)
    # Strided windows score every token once, whatever the window.
    long_text = " ".join(["a great movie, far too boring"] * 12)
    whole = backend.loglikelihood_rolling([long_text])[0]
    ids = torch.tensor(tiny_model.tokenizer(long_text)["input_ids"])
    total, count, windows = backend.rolling_nll(ids, window=32, stride=16)
    assert count == whole.tokens and windows > 1 and math.isfinite(total)


def test_embeddings_pool_the_bodys_last_hidden_states(tiny_model):
    texts = ["a great movie", "far too long and boring"]
    backend = HFBackend(tiny_model)
    got = backend.embed(texts, "mean", special_tokens=False)
    last = backend.embed(texts, "last", special_tokens=False)
    for row, text in enumerate(texts):
        ids = torch.tensor([tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            hidden = tiny_model.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        assert got[row] == pytest.approx(hidden[0].mean(0), abs=1e-5)
        assert last[row] == pytest.approx(hidden[0, -1], abs=1e-5)
    with pytest.raises(BackendError, match="Unknown pooling 'max'"):
        backend.embed(texts, "max")


def test_score_choices_rejects_a_string_of_choices(tiny_model):
    with pytest.raises(LmboostError, match="choices must be a list of strings"):
        Scorer(tiny_model).score_choices(CONTEXTS, " positive")


def _request(context, continuation):
    from lmboost.scoring import EncodedRequest

    return EncodedRequest(tuple(context), tuple(continuation))


def test_a_pinned_prefix_is_reused_by_single_context_calls(tiny_model):
    """A server pins its task's demonstrations once; later calls, even of one context, then run
    only their own tokens after it, with the scores of an unpinned backend."""
    from lmboost.backends.hf.calls import recorded_forwards
    from lmboost.scoring.requests import encode_context, encode_request

    prefix = "Review: a fine film\nSentiment: positive\n\nReview: awful\nSentiment: negative\n\n"
    queries = [prefix + c for c in CONTEXTS]
    plain = Scorer(tiny_model).score_choices(queries, WORDS)
    pinned = Scorer(tiny_model)
    pins = [prefix + "Review: N/A\nSentiment:", prefix + "Review: \nSentiment:"]
    length = pinned.pin_prefix(pins)
    assert length >= len(pinned.tokenizer(prefix)["input_ids"])  # the demonstrations at least
    pinned.score_choices([prefix + "Review: warm-up\nSentiment:"], WORDS)  # first-use probes
    tokens = encode_context(pinned.tokenizer, pins[0])[:length]
    tails = sum(len(encode_request(pinned.tokenizer, "x", w).continuation) - 1 for w in WORDS)
    single = []
    for q in queries:
        with recorded_forwards(tiny_model.model.base_model) as shapes:
            single.append(pinned.score_choices([q], WORDS)[0])
        ids = encode_context(pinned.tokenizer, q)
        shared = next((i for i, (a, b) in enumerate(zip(tokens, ids)) if a != b), len(tokens))
        assert shared >= length - 1  # at most the pin's last token differs (" " + "N" vs " a")
        # each query runs its own tokens, then or with its label words' later ones: the prefix
        # is never run again
        rows, run = shapes[0]
        assert rows == 1 and len(ids) - shared <= run <= len(ids) - shared + tails
    torch.testing.assert_close(torch.tensor(single), torch.tensor(plain), atol=1e-5, rtol=0)
    with pytest.raises(LmboostError, match="at least two contexts"):
        pinned.pin_prefix([prefix])


def test_one_long_context_runs_apart_from_the_short_ones(tiny_model):
    """A token budget per scoring batch: a context far longer than the rest runs in a batch of
    its own instead of padding the short ones to its length, with the same scores."""
    from lmboost.backends.hf.calls import recorded_forwards


    long = "Review: " + "a long film " * 12 + "\nSentiment:"
    contexts = [long, *CONTEXTS]
    plain = HFBackend(tiny_model, batch_size=16).score_choices(contexts, WORDS)
    budgeted = HFBackend(tiny_model, batch_size=16, max_batch_tokens=32)
    with recorded_forwards(tiny_model.model.base_model) as shapes:
        scores = budgeted.score_choices(contexts, WORDS)
    long_len = len(budgeted.tokenizer(long)["input_ids"])
    assert long_len > 32
    long_runs = [rows for rows, tokens in shapes if tokens >= long_len - 8]
    assert long_runs == [1], shapes  # the long one alone (after the shared prefix)
    torch.testing.assert_close(torch.tensor(scores), torch.tensor(plain), atol=1e-5, rtol=0)
