"""How a model is called is decided by what it does: a transformers release that renames the KV
cache argument (5.24: ``cache``), or a model that swallows unknown arguments, must neither switch
prefix caching off silently nor trigger a deprecation warning from lmboost's own calls."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import LlamaForCausalLM

from lmboost.backends.hf.calls import cache_argument, recorded_forwards, takes_logits_to_keep
from lmboost.decoding import SelfEvaluator
from lmboost.decoding.goals import Goal
from lmboost.generation import encode_prompt
from lmboost.models import LoadedModel

GOAL = Goal("short", "Is it nice?", "{prompt}{response}", "Nice.", "Not nice.")
PAIRS = [("Review: a great movie", " indeed"), ("Review: a great movie", "!"), ("Hi", " there")]


class RenamedCache(LlamaForCausalLM):
    """A later transformers' API: the cache is passed as ``cache``; the old name still works
    but is deprecated (a FutureWarning)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.inner = cache_argument(LlamaForCausalLM(config))  # the installed parent's name

    def forward(self, input_ids=None, cache=None, **kwargs):
        if "past_key_values" in kwargs:
            warnings.warn("`past_key_values` is deprecated", FutureWarning, stacklevel=2)
            cache = kwargs.pop("past_key_values")
        return super().forward(input_ids=input_ids, **{self.inner: cache}, **kwargs)


class NoCache(LlamaForCausalLM):
    """Swallows the cache under every name (and logits_to_keep) without an error."""

    def forward(self, input_ids=None, **kwargs):
        for name in ("cache", "past_key_values", "logits_to_keep"):
            kwargs.pop(name, None)
        kwargs["use_cache"] = False
        return super().forward(input_ids=input_ids, **kwargs)


def _as(cls, loaded: LoadedModel) -> LoadedModel:
    model = cls(loaded.model.config).eval()
    model.load_state_dict(loaded.model.state_dict())
    return LoadedModel(model=model, tokenizer=loaded.tokenizer, spec=cls.__name__, path=None)


@torch.inference_mode()
def _plain_values(loaded: LoadedModel) -> list[float]:
    """Each pair's value from plain forwards of the whole questions (no cache)."""
    from lmboost.decoding.evaluator import label_token_ids

    a, b = label_token_ids(loaded.tokenizer, GOAL.labels)
    values = []
    for prompt, response in PAIRS:
        good = []
        for first in (True, False):
            ids = encode_prompt(loaded.tokenizer, GOAL.judge(prompt, response, good_first=first),
                                False)
            pair = loaded.model(input_ids=torch.tensor([ids])).logits[0, -1, [a, b]].softmax(-1)
            good.append(float(pair[0] if first else pair[1]))
        values.append(sum(good) - 1)
    return values


def _judge(loaded: LoadedModel) -> tuple[list[float], list[tuple[int, int]]]:
    """The self-evaluator's values and the (batch, tokens) of every forward it ran."""
    evaluator = SelfEvaluator(loaded, GOAL)
    with recorded_forwards(loaded.model) as widths:
        values = [evaluator(prompt, response) for prompt, response in PAIRS]
    return values, widths


def test_the_tiny_llama_takes_a_cache_and_keeps_only_the_last_logits(tiny_model):
    assert cache_argument(tiny_model.model) in ("cache", "past_key_values")
    assert takes_logits_to_keep(tiny_model.model)


def test_a_renamed_cache_argument_is_found_and_used_without_deprecation(tiny_model):
    renamed = _as(RenamedCache, tiny_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache_argument(renamed.model) == "cache"
        assert takes_logits_to_keep(renamed.model)
        values, widths = _judge(renamed)
    assert values == pytest.approx(_plain_values(tiny_model), abs=1e-5)
    # Prefix caching is on: per question, one 1-row forward of the tokens both option orders
    # share that the last question's cache does not hold, then one 2-row forward of the tails.
    prefix_runs = [w for w in widths if w[0] == 1]
    questions = [w for w in widths if w[0] == 2]
    assert len(prefix_runs) == len(questions) == len(PAIRS)
    for number, ((prompt, response), (_, run), (_, width)) in enumerate(
        zip(PAIRS, prefix_runs, questions)
    ):
        rows = [encode_prompt(renamed.tokenizer, GOAL.judge(prompt, response, good_first=g),
                              False) for g in (True, False)]
        shared = next(i for i, (a, b) in enumerate(zip(*rows)) if a != b)
        assert run == shared if number == 0 else run < shared
        assert width == len(rows[0]) - shared


def test_a_model_that_takes_no_cache_is_reported_not_silently_slow(tiny_model):
    plain = _as(NoCache, tiny_model)
    with pytest.warns(UserWarning, match="takes a KV cache under none of cache, past_key_values"):
        assert cache_argument(plain.model) is None
    assert not takes_logits_to_keep(plain.model)
    values, widths = _judge(plain)
    assert values == pytest.approx(_plain_values(tiny_model), abs=1e-5)
    assert [w[0] for w in widths] == [2] * len(PAIRS)  # whole questions, no prefix runs


def test_a_model_that_takes_no_cache_scores_every_context_whole(tiny_model):
    """Scoring without a KV cache runs each context whole (no shared prefix) to the same
    log-likelihoods (it raised when it came to the shared prefix before)."""
    from lmboost.backends.hf import HFBackend

    pairs = [("Review: a great movie\nSentiment:", " positive"),
             ("Review: a great movie\nSentiment:", " negative"), ("Review: dull", " negative")]
    want = HFBackend(tiny_model).loglikelihood(pairs)
    plain = _as(NoCache, tiny_model)
    with warnings.catch_warnings():  # "takes a KV cache under none of ...", once per class
        warnings.simplefilter("ignore")
        got = HFBackend(plain).loglikelihood(pairs)
    assert [g.logprob for g in got] == pytest.approx([w.logprob for w in want], abs=1e-4)


def test_recorded_forwards_sees_each_forward_of_the_model_or_its_body(tiny_model):
    ids = torch.ones(2, 5, dtype=torch.long)
    with recorded_forwards(tiny_model.model) as whole, \
            recorded_forwards(tiny_model.model, body=True) as body:
        tiny_model.model(input_ids=ids)
        tiny_model.model.get_decoder()(input_ids=ids[:1, :3])  # the body alone, no head
    assert whole == [(2, 5)]
    assert body == [(2, 5), (1, 3)]
    tiny_model.model(input_ids=ids)
    assert whole == [(2, 5)]  # the hook is gone after the block
