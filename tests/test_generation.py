"""lmboost.generation on the tiny random Llama: greedy = argmax loop, stop strings, shared
prompt encoding for n samples, seeding, chat templates, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import recorded_forwards

from lmboost.generation import (
    GenerationConfig,
    GenerationError,
    cut_at_stop,
    encode_prompt,
    format_prompt,
    generate,
    resolve_chat,
)
from lmboost.models import LoadedModel

PROMPTS = ["Review: a great movie\nSentiment:", "Article: markets fell"]



@pytest.fixture
def forward_calls(tiny_model):
    """Shapes of the input_ids of every forward of the tiny model while the test runs."""
    with recorded_forwards(tiny_model.model) as calls:
        yield calls


def _argmax_loop(loaded: LoadedModel, prompt: str, steps: int) -> str:
    """Plain greedy decoding: full forward of the whole sequence, argmax, append, repeat."""
    ids = encode_prompt(loaded.tokenizer, prompt, chat=False)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = loaded.model(input_ids=torch.tensor([ids + new])).logits[0, -1]
            token = int(logits.argmax())
            if token == loaded.tokenizer.eos_token_id:
                break
            new.append(token)
    return loaded.tokenizer.decode(new, skip_special_tokens=True)


def test_greedy_equals_argmax_loop(tiny_model):
    config = GenerationConfig(max_new_tokens=12)
    for prompt in PROMPTS:
        assert generate(tiny_model, [prompt], config) == [[_argmax_loop(tiny_model, prompt, 12)]]


def test_batched_left_padding_matches_single_prompts(tiny_model):
    config = GenerationConfig(max_new_tokens=10)
    single = [generate(tiny_model, [p], config)[0] for p in PROMPTS]
    assert generate(tiny_model, PROMPTS, config, batch_size=2) == single
    assert generate(tiny_model, PROMPTS, config, batch_size=1) == single


def test_stop_strings_cut_text_and_stop_early(tiny_model, forward_calls):
    prompt = PROMPTS[0]
    full = generate(tiny_model, [prompt], GenerationConfig(max_new_tokens=20))[0][0]
    stop = full[6:8]  # two characters from the middle of the free-running text
    assert stop and full.find(stop) >= 0
    forward_calls.clear()
    cut = generate(tiny_model, [prompt], GenerationConfig(max_new_tokens=20, stop=(stop,)))
    assert cut == [[full[: full.find(stop)]]]
    assert len(forward_calls) < 20  # generation ended at the stop string, not at the limit


def test_cut_at_stop():
    assert cut_at_stop("a\n\nQ: b", ("\nQ:", "\n\n")) == "a"
    assert cut_at_stop("abc", ()) == "abc"
    assert cut_at_stop("abc", ("x",)) == "abc"


def test_n_samples_share_one_prompt_encoding(tiny_model, forward_calls):
    prompt = PROMPTS[0]
    length = len(encode_prompt(tiny_model.tokenizer, prompt, chat=False))
    config = GenerationConfig(max_new_tokens=5, do_sample=True, seed=0)
    out = generate(tiny_model, [prompt], config, n=4)
    assert len(out) == 1 and len(out[0]) == 4
    # One forward over the prompt (all but its last token) for a single row; every later
    # forward feeds one token per sample.
    assert forward_calls[0] == (1, length - 1)
    assert all(shape == (4, 1) for shape in forward_calls[1:])
    assert sum(b * t for b, t in forward_calls) == (length - 1) + 4 * 5


def test_n_samples_for_several_prompts(tiny_model, forward_calls):
    config = GenerationConfig(max_new_tokens=4, do_sample=True, seed=1)
    out = generate(tiny_model, PROMPTS, config, n=3, batch_size=2)
    assert [len(o) for o in out] == [3, 3]
    assert forward_calls[0][0] == 2 and all(shape[0] == 6 for shape in forward_calls[1:])


def test_seeded_sampling_is_reproducible(tiny_model):
    config = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.5, seed=7)
    first = generate(tiny_model, PROMPTS, config, n=3)
    assert generate(tiny_model, PROMPTS, config, n=3) == first
    other = generate(tiny_model, PROMPTS, GenerationConfig(**{**config.__dict__, "seed": 8}), n=3)
    assert other != first


def test_chat_template(tiny_model):
    tokenizer = copy.deepcopy(tiny_model.tokenizer)
    assert resolve_chat(tokenizer, None) is False
    with pytest.raises(GenerationError, match="no chat template"):
        resolve_chat(tokenizer, True)
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}"
    )
    assert resolve_chat(tokenizer, None) is True
    assert resolve_chat(tokenizer, False) is False
    text = format_prompt(tokenizer, ("Q: 2+2?", " Let's think."), chat=True)
    assert text == "<s>user: Q: 2+2?\n<s>assistant:Let's think."
    assert format_prompt(tokenizer, ("Q: 2+2?", " Let's think."), chat=False) == (
        "Q: 2+2? Let's think."
    )
    loaded = LoadedModel(tiny_model.model, tokenizer, "tiny-chat", None)
    out = generate(loaded, ["Review: great"], GenerationConfig(max_new_tokens=3))
    assert len(out) == 1 and isinstance(out[0][0], str)


def test_errors(tiny_model):
    with pytest.raises(GenerationError, match="No prompts"):
        generate(tiny_model, [])
    with pytest.raises(GenerationError, match="No prompts"):
        generate(tiny_model, "a string, not a list")
    with pytest.raises(GenerationError, match="at least 1"):
        generate(tiny_model, ["x"], n=0)
    with pytest.raises(GenerationError, match="context window is 128"):
        generate(tiny_model, ["great movie " * 100])
    with pytest.raises(GenerationError, match="temperature"):
        generate(tiny_model, ["x"], GenerationConfig(do_sample=True, temperature=0))
    with pytest.raises(GenerationError, match="max_new_tokens"):
        generate(tiny_model, ["x"], GenerationConfig(max_new_tokens=0))
    with pytest.raises(GenerationError, match="top_p"):
        generate(tiny_model, ["x"], GenerationConfig(top_p=0))
    with pytest.raises(GenerationError, match="stop"):
        generate(tiny_model, ["x"], GenerationConfig(stop="\n"))


def test_long_prompt_generates_fewer_tokens_with_a_warning(tiny_model):
    prompt = "Review:"
    while len(encode_prompt(tiny_model.tokenizer, prompt + " great", chat=False)) < 110:
        prompt += " great"
    with pytest.warns(UserWarning, match="context window"):
        generate(tiny_model, [prompt], GenerationConfig(max_new_tokens=64))


def test_greedy_from_the_shared_cache_equals_plain_greedy(tiny_model):
    """The n > 1 path (prefill once, expand the cache) decodes exactly like the n = 1 path, also
    for left-padded rows of a batch."""
    prompts = [PROMPTS[0], "Q", PROMPTS[1]]
    config = GenerationConfig(max_new_tokens=10)
    plain = generate(tiny_model, prompts, config, batch_size=3)
    shared = generate(tiny_model, prompts, config, n=2, batch_size=3)
    assert shared == [[texts[0]] * 2 for texts in plain]
