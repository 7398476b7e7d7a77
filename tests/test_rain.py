"""lmboost.decoding (RAIN): the tree rules on hand-built trees, the commit rule and the exhausted
budget with stub evaluators, the widening length, the self-evaluator's option tokens and order
averaging, the cached judge prefix and the embedder against plain full forwards, seeded searches
on the tiny random Llama, and ``lmboost generate`` end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
import torch

from lmboost.backends.hf.calls import recorded_forwards
from lmboost.cli import main
from lmboost.decoding import (
    Goal,
    GoalJudge,
    ModelEmbedder,
    Node,
    RainConfig,
    SelfEvaluator,
    label_token_ids,
    rain_generate,
    resolve_goal,
)
from lmboost.decoding.rain import (
    ValueBounds,
    _Search,
    backup,
    puct_score,
    ready_to_commit,
    select_child,
    should_widen,
)
from lmboost.errors import LmboostError
from lmboost.evaluation.records import read_json
from lmboost.generation import (
    GenerateRunConfig,
    GenerationConfig,
    GenerationError,
    encode_prompt,
    generate,
    run_generate,
    same_rain_trace,
    summarise_run,
)
from lmboost.models import LoadedModel

PROMPT = "Review: a great movie"
SMALL = RainConfig(max_new_tokens=7, max_iterations=6, num_candidates=3, simulation_tokens=6)
#: A goal whose questions fit the tiny model's 128-token window (so the prompt prefix is cached).
SHORT = Goal("short", "Is it nice?", "{prompt}{response}", "Nice.", "Not nice.")


def constant_evaluator(value: float):
    """A stub judge that gives every text the same value."""
    return lambda prompt, response: value


def orthogonal_embedder():
    """A stub embedder: every distinct text gets its own one-hot vector (similarity 0)."""
    index: dict[str, int] = {}

    def embed(texts):
        rows = [torch.nn.functional.one_hot(torch.tensor(index.setdefault(t, len(index))), 512)
                for t in texts]
        return torch.stack(rows).float()

    return embed


def alike_embedder(texts):
    """A stub embedder: every text looks the same (similarity 1)."""
    return torch.ones(len(texts), 4)


def _embedded(v: float, n: float, embedding: list[float]) -> Node:
    return Node(n=n, v=v, visits=int(n), embedding=torch.tensor(embedding))


# --- the tree rules --------------------------------------------------------------------------


def test_selection_picks_the_highest_puct_score():
    parent = Node(n=9, children=[
        Node(prior=0.5, n=4, v=0.2),  # (0.2 + 1) / 2 + 2 * 0.5 * 3 / 5 = 0.6 + 0.6 = 1.2
        Node(prior=0.3, n=1, v=0.6),  # (0.6 + 1) / 2 + 2 * 0.3 * 3 / 2 = 0.8 + 0.9 = 1.7
        Node(prior=0.2, n=0, v=0.0),  # unvisited: 0 + 2 * 0.2 * 3 / 1 = 1.2
    ])
    bounds = ValueBounds(-1.0, 1.0)
    scores = [puct_score(child, parent.n, 2.0, bounds) for child in parent.children]
    assert scores == pytest.approx([1.2, 1.7, 1.2])
    assert select_child(parent, 2.0, bounds) is parent.children[1]
    # Normalised by the running bounds: with values seen in [0, 0.6], 0.2 -> 1/3, 0.6 -> 1.
    narrow = ValueBounds(0.0, 0.6)
    assert puct_score(parent.children[0], 9, 2.0, narrow) == pytest.approx(1 / 3 + 0.6)
    assert puct_score(parent.children[1], 9, 2.0, narrow) == pytest.approx(1.0 + 0.9)


def test_backup_updates_counts_and_means_up_to_the_root():
    leaf = Node(n=0, v=0.0)
    middle = Node(n=1, v=0.0, visits=1, children=[leaf])
    root = Node(n=2, v=0.5, children=[middle])
    bounds = ValueBounds(-1.0, 1.0)
    embeddings = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    backup([root, middle, leaf], 1.0, embeddings, bounds, threshold=0.95, weight=0.2)
    assert (root.n, root.v) == (3, pytest.approx(0.5 + 0.5 / 3))
    assert (middle.n, middle.v) == (2, pytest.approx(0.5))
    assert (leaf.n, leaf.v) == (1, pytest.approx(1.0))
    assert torch.equal(leaf.embedding, torch.tensor([0.0, 1.0]))
    assert middle.visits == 2 and leaf.visits == 1
    # A node's embedding is the mean of its continuations' embeddings.
    middle.embedding = torch.tensor([0.0, 2.0])
    backup([root, middle], 1.0, [torch.tensor([2.0, 0.0])], bounds, 0.95, 0.2)
    assert torch.allclose(middle.embedding, torch.tensor([2 / 3, 4 / 3]))


def test_similar_siblings_share_the_value_with_weight_gamma_times_similarity():
    node = Node(n=0, v=0.0)
    near = _embedded(v=0.0, n=1, embedding=[0.96, 0.28])  # cosine 0.96 with [1, 0]
    far = _embedded(v=0.0, n=1, embedding=[0.9, math.sqrt(1 - 0.81)])  # cosine 0.90
    unseen = Node(n=0, v=0.0)  # no embedding yet: never updated
    root = Node(n=1, children=[node, near, far, unseen])
    backup([root, node], 1.0, [torch.tensor([1.0, 0.0])], ValueBounds(-1, 1), 0.95, 0.2)
    assert near.n == pytest.approx(1 + 0.2 * 0.96)
    assert near.v == pytest.approx(0.2 * 0.96 * 1.0 / (1 + 0.2 * 0.96))
    assert (far.n, far.v) == (1, 0.0)
    assert (unseen.n, unseen.v) == (0, 0.0)


def test_widening_only_when_children_are_alike_and_poor():
    def parent(values, embeddings, count=None):
        kids = [_embedded(v, 1, e) for v, e in zip(values, embeddings)]
        return Node(n=3, children=kids[:count] if count else kids)

    alike = [[1.0, 0.0], [0.99, 0.05], [0.98, 0.1]]
    assert should_widen(parent([-0.5, -0.2, -0.9], alike), 20, 0.95, 0.0)
    assert not should_widen(parent([-0.5, 0.1, -0.9], alike), 20, 0.95, 0.0)  # one is good
    different = [[1.0, 0.0], [0.0, 1.0], [0.98, 0.1]]
    assert not should_widen(parent([-0.5, -0.2, -0.9], different), 20, 0.95, 0.0)
    assert not should_widen(parent([-0.5, -0.2, -0.9], alike), 3, 0.95, 0.0)  # at the cap
    unembedded = parent([-0.5, -0.2, -0.9], alike)
    unembedded.children.append(Node())
    assert not should_widen(unembedded, 20, 0.95, 0.0)


def test_commit_thresholds():
    assert not ready_to_commit(Node(n=6, v=1.0), min_visits=6, value_threshold=0.8)
    assert not ready_to_commit(Node(n=7, v=0.8), min_visits=6, value_threshold=0.8)
    assert ready_to_commit(Node(n=7, v=0.81), min_visits=6, value_threshold=0.8)


# --- the search on the tiny model, stub judges ----------------------------------------------


def test_commit_as_soon_as_visits_and_value_pass_the_thresholds(tiny_model):
    config = RainConfig(max_new_tokens=7, max_iterations=20, num_candidates=3, min_visits=2,
                        simulation_tokens=4)
    result = rain_generate(tiny_model, PROMPT, config, evaluator=constant_evaluator(1.0),
                           embedder=orthogonal_embedder())
    assert result.steps == 3  # token sets of 1, 2 and 4 tokens
    for record in result.trace:
        chosen = record["children"][record["chosen"]]
        assert record["stop"] == "thresholds"
        assert record["iterations"] < config.max_iterations
        assert chosen["visits"] == 3  # the first count above min_visits = 2: not one later
        assert chosen["value"] == 1.0
    assert result.tokens == 7


def test_low_values_exhaust_the_budget_and_commit_the_most_visited(tiny_model):
    config = RainConfig(max_new_tokens=3, max_iterations=10, min_new_iterations=3,
                        num_candidates=3, simulation_tokens=4)
    result = rain_generate(tiny_model, PROMPT, config, evaluator=constant_evaluator(-1.0),
                           embedder=alike_embedder)
    assert result.steps == 2 and result.text
    first, second = result.trace
    assert first["iterations"] == 10
    assert 3 <= second["iterations"] <= 10  # inherited visits count, at least 3 new searches
    for record in result.trace:
        assert record["stop"] == "budget"
        visits = [child["visits"] for child in record["children"]]
        assert record["children"][record["chosen"]]["visits"] == max(visits)
    # Alike children that all score -1 got widened beyond the 3 proposed ones.
    assert len(first["children"]) > config.num_candidates


@torch.inference_mode()
def test_widening_proposes_the_length_set_for_the_depth(tiny_model):
    """A node's first child ended at EOS (1 token): the extra child still gets the depth's 2."""
    eos = tiny_model.tokenizer.eos_token_id
    prompt_ids = encode_prompt(tiny_model.tokenizer, PROMPT, False)
    for max_new, expected in ((7, 2), (2, 1)):  # 2 by depth; 1 when max_new_tokens leaves 1
        config = RainConfig(max_new_tokens=max_new, num_candidates=3)
        search = _Search(tiny_model, prompt_ids, PROMPT, "", config, constant_evaluator(-1.0),
                         alike_embedder)
        node = Node(tokens=(5,), depth=1, n=2, children=[
            Node(tokens=(eos,), depth=2, n=1, v=-1.0, embedding=torch.ones(4)),
            Node(tokens=(7, 8), depth=2, n=1, v=-1.0, embedding=torch.ones(4)),
        ][: 2 if max_new > 2 else 1])
        search.root.children = [node]
        lengths: list[int] = []

        def propose(cache, logits, length, exclude, lengths=lengths):
            lengths.append(length)
            return [((9, 10)[:length], -1.0)]

        search._propose = propose
        search._widen([search.root, node])
        assert lengths == [expected]
        assert node.children[-1].tokens == (9, 10)[:expected]
        assert node.children[-1].depth == 2


@pytest.mark.filterwarnings("ignore:A judge prompt")
def test_seeded_search_is_deterministic(tiny_model):
    goal = resolve_goal("Is it kind?")
    runs = [
        rain_generate(tiny_model, PROMPT, SMALL, goal=goal, embedder=ModelEmbedder(tiny_model))
        for _ in range(2)
    ]
    assert runs[0].text == runs[1].text
    assert runs[0].trace == runs[1].trace
    assert runs[0].iterations == sum(r["iterations"] for r in runs[0].trace) > 0


def test_seeded_search_with_the_cached_judge_prefix(tiny_model):
    """Every judgement runs both option orders as one 2-row batch of the option tails alone,
    after a cached prefix of everything the two questions share; the prefix is built from the
    last judgement's (its shared tokens not run again); the search stays reproducible, and every
    value it judged equals that of a plain forward of the whole question."""
    runs, judged = [], []
    for _ in range(2):
        evaluator = SelfEvaluator(tiny_model, SHORT)
        judged.clear()
        with (
            recorded_forwards(tiny_model.model) as widths,
            judge_forwards(evaluator, widths, judged),
        ):
            runs.append(rain_generate(tiny_model, PROMPT, SMALL, evaluator=evaluator,
                                      embedder=ModelEmbedder(tiny_model)))
    assert runs[0].text == runs[1].text and runs[0].trace == runs[1].trace
    assert len(evaluator.memo) > 3 and len(judged) > 3
    for number, (prompt, (response,), calls) in enumerate(judged):
        rows = [encode_prompt(tiny_model.tokenizer, SHORT.judge(prompt, response, good_first=g),
                              False) for g in (True, False)]
        shared = next(i for i, (a, b) in enumerate(zip(*rows)) if a != b)
        *prefix, (batch, width) = calls
        assert batch == 2 and width == len(rows[0]) - shared  # the tails alone
        (rows_run, run), = prefix  # one 1-row forward of the shared tokens not cached yet
        assert rows_run == 1
        assert run == shared if number == 0 else run < shared
    for (prompt, response), value in evaluator.memo.items():
        assert value == pytest.approx(
            float(2 * plain_p_good(tiny_model, SHORT, prompt, response).mean() - 1),
            abs=1e-5,
        )


@contextlib.contextmanager
def judge_forwards(evaluator, widths, judged):
    """Collect into ``judged`` (prompt, responses, forwards run) for each batch of judgements."""
    original = evaluator.p_good_batch

    def p_good_batch(prompt, responses):
        start = len(widths)
        try:
            return original(prompt, responses)
        finally:
            judged.append((prompt, responses, widths[start:]))

    evaluator.p_good_batch = p_good_batch
    try:
        yield
    finally:
        del evaluator.p_good_batch


def _comparable(trace: list[dict]) -> list[dict]:
    """A trace with its floats rounded to what float round-off between batch shapes leaves."""
    return [
        {**step, "children": [{**child, "visits": round(child["visits"], 3),
                               "value": round(child["value"], 3),
                               "prior": round(child["prior"], 3)}
                              for child in step["children"]]}
        for step in trace
    ]


@pytest.mark.parametrize("goal", [SHORT, resolve_goal("positive")])
@pytest.mark.filterwarnings("ignore:A judge prompt")
def test_the_batched_search_equals_the_sequential_one(tiny_model, goal):
    """Decoding each leaf's simulation and candidates as one batch gives the sequential search's
    text and tree statistics (visits, values, priors of every step's root children, the
    committed sets, iterations, rewinds) for a fixed seed, on two judge goals: the draws come
    from the same generators in the same order, and the batch changes the logits only by float
    round-off (3 decimals compared; they agree far closer)."""
    config = RainConfig(max_new_tokens=12, max_iterations=8, num_candidates=4,
                        simulation_tokens=8, seed=3)
    runs = {}
    for batched in (False, True):
        with recorded_forwards(tiny_model.model) as widths:
            runs[batched] = rain_generate(
                tiny_model, PROMPT, dataclasses.replace(config, batched=batched), goal=goal,
                embedder=ModelEmbedder(tiny_model),
            )
        runs[batched].forwards = len(widths)
    sequential, batched = runs[False], runs[True]
    assert batched.text == sequential.text and batched.tokens == sequential.tokens == 12
    assert _comparable(batched.trace) == _comparable(sequential.trace)
    assert batched.iterations == sequential.iterations
    assert batched.forwards < sequential.forwards  # the point: fewer, wider forwards


@pytest.mark.filterwarnings("ignore:A judge prompt")
def test_parallel_rounds_with_virtual_losses(tiny_model):
    """parallel = 3: searches run in rounds of up to 3 distinct leaves, in fewer forwards; the
    budget still counts every search, and the search is reproducible."""
    config = RainConfig(max_new_tokens=7, max_iterations=7, min_new_iterations=4,
                        num_candidates=3, simulation_tokens=6, parallel=3)
    runs, forwards = [], []
    for parallel in (3, 3, 1):
        with recorded_forwards(tiny_model.model) as widths:
            runs.append(rain_generate(
                tiny_model, PROMPT, dataclasses.replace(config, parallel=parallel), goal=SHORT,
                embedder=ModelEmbedder(tiny_model),
            ))
        forwards.append(len(widths))
    assert runs[0].text == runs[1].text and runs[0].trace == runs[1].trace
    assert runs[0].tokens == 7
    assert [step["iterations"] for step in runs[0].trace] == [
        step["iterations"] for step in runs[2].trace
    ]
    assert forwards[0] < forwards[2]
    with pytest.raises(GenerationError, match="parallel"):
        RainConfig(parallel=0).validate()


def test_virtual_loss_counts_as_visits_at_the_lowest_value():
    child = Node(prior=0.3, n=1, v=0.6)
    bounds = ValueBounds(-1.0, 1.0)
    # n = 1 + 1, v = (0.6 - 1) / 2 = -0.2 -> v^ = 0.4; 2 * 0.3 * 3 / (1 + 2) = 0.6
    assert puct_score(child, 9, 2.0, bounds, virtual=1) == pytest.approx(1.0)
    parent = Node(n=9, children=[child, Node(prior=0.25, n=1, v=0.6)])
    assert select_child(parent, 2.0, bounds) is child
    assert select_child(parent, 2.0, bounds, {id(child): 1}) is parent.children[1]


def test_progress_line_per_prompt(tiny_model, capsys):
    rain_generate(tiny_model, PROMPT, SMALL, evaluator=constant_evaluator(0.0),
                  embedder=orthogonal_embedder(), progress="prompt 1/1")
    err = capsys.readouterr().err
    assert "prompt 1/1" in err and "7/7" in err
    assert "step=3" in err and "searches=" in err and "rewinds=" in err


def test_candidates_reuse_the_prompt_cache(tiny_model):
    """The prompt is encoded once; every other forward runs only a few new tokens."""
    widths: list[int] = []
    handle = tiny_model.model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        rain_generate(tiny_model, PROMPT * 3, SMALL, evaluator=constant_evaluator(0.0),
                      embedder=orthogonal_embedder())
    finally:
        handle.remove()
    prompt_len = len(tiny_model.tokenizer(PROMPT * 3)["input_ids"])
    assert widths[0] == prompt_len
    assert max(widths[1:]) < prompt_len


# --- self-evaluation ---------------------------------------------------------------------------


def test_option_tokens_come_from_the_tokenizer(tiny_model):
    tokenizer = tiny_model.tokenizer
    a, b = label_token_ids(tokenizer, ("A", "B"))
    assert a != b
    assert tokenizer("The answer is: (A", add_special_tokens=False)["input_ids"][-1] == a
    with pytest.raises(GenerationError, match="encodes to no tokens"):
        label_token_ids(tokenizer, ("", "B"))
    with pytest.raises(GenerationError, match="same token"):
        label_token_ids(tokenizer, ("yes", "yes sir"))


class _FixedLogits(torch.nn.Module):
    """A stand-in LM whose last-position logits are fixed per batch row."""

    def __init__(self, config, last: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.last = last
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, input_ids, **kwargs):
        self.shapes.append(tuple(input_ids.shape))
        logits = torch.zeros(*input_ids.shape, self.last.shape[-1])
        logits[:, -1] = self.last
        return SimpleNamespace(logits=logits)


@torch.inference_mode()
def plain_p_good(loaded, goal, prompt, response) -> torch.Tensor:
    """The reference: P(good) / (P(A) + P(B)) from a full forward of each whole question."""
    a, b = label_token_ids(loaded.tokenizer, goal.labels)
    good = []
    for good_first in (True, False):
        ids = encode_prompt(loaded.tokenizer, goal.judge(prompt, response, good_first=good_first),
                            False)
        pair = loaded.model(input_ids=torch.tensor([ids])).logits[0, -1, [a, b]].softmax(-1)
        good.append(pair[0] if good_first else pair[1])
    return torch.stack(good)


def test_self_evaluator_equals_a_plain_forward_of_the_whole_question(tiny_model):
    """Values equal a plain forward of each whole question. Each judgement runs, as one row,
    only the tokens both orders share that the last judgement's cache does not hold (for a new
    response to the same prompt, fewer than all of them), then both option tails as one batch;
    a batch of responses, all its questions after the prefix they all share."""
    evaluator = SelfEvaluator(tiny_model, SHORT)
    pairs = [(PROMPT, " indeed"), (PROMPT, ""), (PROMPT, "!"), (PROMPT, " and long, long"),
             ("Review: boring", " film"), ("Hi", " there")]
    with recorded_forwards(tiny_model.model) as widths:
        for i, (prompt, response) in enumerate(pairs):
            expected = plain_p_good(tiny_model, SHORT, prompt, response)
            start = len(widths)
            got = evaluator.p_good(prompt, response)
            assert torch.allclose(got, expected, atol=1e-5)
            rows = [encode_prompt(tiny_model.tokenizer,
                                  SHORT.judge(prompt, response, good_first=g), False)
                    for g in (True, False)]
            shared = next(i for i, (a, b) in enumerate(zip(*rows)) if a != b)
            (one, run), (batch, width) = widths[start:]
            assert one == 1 and 0 < run <= shared
            if prompt == PROMPT and i > 0:
                assert run < shared  # the prompt's tokens came from the last judgement
            assert batch == 2 and width == len(rows[0]) - shared
            assert evaluator(prompt, response) == pytest.approx(
                float(2 * expected.mean() - 1), abs=1e-5
            )
    responses = [" so good", " so bad", " fine"]
    with recorded_forwards(tiny_model.model, body=True) as widths:  # the head runs apart
        good = evaluator.p_good_batch(PROMPT, responses)
    (stems, _), (tails, _) = widths[-2:]
    assert (stems, tails) == (3, 6)  # each response's shared tokens once, then the 6 tails
    for response, row in zip(responses, good):
        assert torch.allclose(row, plain_p_good(tiny_model, SHORT, PROMPT, response), atol=1e-5)


def test_calibrated_self_evaluation_is_relative_to_the_run(tiny_model):
    """With ``calibrate``, each order's running BC estimate (this batch included) is subtracted:
    a first batch of one judgement is neutral (0); a first batch of two gets opposite values."""
    assert SelfEvaluator(tiny_model, SHORT, calibrate=True)(PROMPT, " indeed") == 0.0
    calibrated = SelfEvaluator(tiny_model, SHORT, calibrate=True)
    values = calibrated.values(PROMPT, [" so good", " so bad"])
    assert values[0] != 0.0 and values[0] == pytest.approx(-values[1], abs=1e-6)
    assert calibrated.values(PROMPT, [" so good"]) == values[:1]  # memoised


@torch.inference_mode()
def test_rows_of_different_lengths_extend_like_plain_forwards(tiny_model):
    """KVState.extend_rows pads rows of different lengths; the logits after each, and after a
    further token for every row, are those of a plain forward of each whole row."""
    from lmboost.backends.hf import HFBackend

    backend = HFBackend(tiny_model)
    prompt = [5, 6, 7, 8]
    rows = [[9], [10, 11, 12], [13, 14]]
    state = backend.prefill(prompt).select([0, 0, 0])
    logits = state.extend_rows(rows)
    after = state.extend([[20], [21], [22]])
    for i, row in enumerate(rows):
        full = torch.tensor([prompt + row + [20 + i]])
        plain = tiny_model.model(input_ids=full).logits[0]
        assert torch.allclose(logits[i], plain[-2], atol=1e-4)
        assert torch.allclose(after[i], plain[-1], atol=1e-4)


def test_model_embedder_equals_the_full_models_last_hidden_states(tiny_model):
    """The body alone (no output head) gives the old embedding: the model's last hidden states,
    averaged over the text's tokens."""
    calls: list[int] = []
    handle = tiny_model.model.lm_head.register_forward_hook(lambda *args: calls.append(1))
    texts = [PROMPT, "", "Hi there", PROMPT]
    try:
        got = ModelEmbedder(tiny_model)(texts)
    finally:
        handle.remove()
    assert not calls and got.shape == (4, 32)
    with torch.inference_mode():
        for text, row in zip(texts, got):
            ids = tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                assert not row.any()
                continue
            out = tiny_model.model(input_ids=torch.tensor([ids]), output_hidden_states=True)
            assert torch.allclose(row, out.hidden_states[-1][0].mean(0), atol=1e-5)


@pytest.mark.filterwarnings("ignore:_FixedLogits takes a KV cache under none")
def test_evaluator_averages_both_option_orders(tiny_model):
    tokenizer = tiny_model.tokenizer
    a, b = label_token_ids(tokenizer, ("A", "B"))
    last = torch.full((2, len(tokenizer)), -1e4)
    last[0, a], last[0, b] = math.log(0.9), math.log(0.1)  # good = (A): P(good) = 0.9
    last[1, a], last[1, b] = math.log(0.6), math.log(0.4)  # good = (B): P(good) = 0.4
    stub = _FixedLogits(tiny_model.model.config, last)
    loaded = LoadedModel(model=stub, tokenizer=tokenizer, spec="stub", path=None)
    goal = Goal("short", "Is it nice?", "{prompt}{response}", "Nice.", "Not nice.")
    evaluator = SelfEvaluator(loaded, goal)
    assert evaluator("Hi", " there") == pytest.approx(2 * (0.9 + 0.4) / 2 - 1)  # 0.3
    assert evaluator("Hi", " there") == pytest.approx(0.3)  # memoised: no second forward
    judged = [shape for shape in stub.shapes if shape[0] > 1]  # 1-row forwards probe the stub
    assert len(judged) == 1 and judged[0][0] == 2  # both orders in one batch
    hard = SelfEvaluator(loaded, goal, hard=True)
    assert hard("Hi", " there") == pytest.approx(0.0)  # votes: 1 (0.9 > 0.5) and 0 (0.4)
    assert goal.judge("Hi", " there", good_first=True)[0].endswith("(A) Nice.\n(B) Not nice.\n")
    assert goal.judge("Hi", " there", good_first=False)[0].endswith("(A) Not nice.\n(B) Nice.\n")


@pytest.mark.filterwarnings("ignore:A judge prompt", "ignore:Left-truncating")
def test_goal_judge_matches_the_self_evaluator_in_batches(tiny_model):
    goal = Goal("short", "Is it nice?", "{prompt}{response}", "Nice.", "Not nice.")
    pairs = [("Review: a great movie", " indeed"), ("Hi", " there, how are you today"),
             ("Review: boring", "")]
    judge = GoalJudge(tiny_model, goal, batch_size=2)
    values = judge.values(pairs)
    expected = [SelfEvaluator(tiny_model, goal)(p, r) for p, r in pairs]
    assert values == pytest.approx(expected, abs=1e-5)
    assert judge(*pairs[1]) == pytest.approx(expected[1], abs=1e-5)  # one pair: an Evaluator
    good = judge.p_good(pairs)
    assert good.shape == (3, 2) and ((good > 0) & (good < 1)).all()
    hard = GoalJudge(tiny_model, goal, hard=True).values(pairs)
    assert hard == pytest.approx([SelfEvaluator(tiny_model, goal, hard=True)(p, r)
                                  for p, r in pairs])
    assert GoalJudge(tiny_model, "harmless").goal.name == "harmless"
    with pytest.raises(GenerationError, match="No \\(prompt, response\\) pairs"):
        judge.values([])


def test_goals_and_config_errors():
    assert resolve_goal("harmless").good.endswith("harmless.")
    assert resolve_goal("Is it polite? ").good == "Yes."
    with pytest.raises(GenerationError, match="Unknown goal"):
        resolve_goal("polite")
    with pytest.raises(GenerationError, match="max_iterations"):
        RainConfig(max_iterations=0).validate()


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:A judge prompt")
def test_cli_rain_end_to_end(tiny_model_dir, tmp_path, capsys):
    argv = ["generate", "--model", tiny_model_dir, "--device", "cpu", "--rain", "--goal",
            "positive", "--prompt", PROMPT, "--max-new-tokens", "3", "--max-iterations", "3",
            "--candidates", "3", "--trace", "--out", str(tmp_path)]
    assert main(argv) == 0
    record = read_json(tmp_path / "results.json")
    assert record["settings"]["decoding"] == "rain" and record["settings"]["goal"] == "positive"
    (item,) = record["results"]
    assert isinstance(item["text"], str) and item["seconds"] > 0
    assert item["steps"] == len(item["trace"]) == 2
    assert all(step["iterations"] == 3 for step in item["trace"])
    assert main(argv) == 0  # a rerun finds the prompt done
    assert read_json(tmp_path / "results.json") == record


@pytest.mark.filterwarnings("ignore:A judge prompt")
def test_an_interrupted_rain_run_keeps_its_finished_prompts_and_resumes_to_the_same_outputs(
    tiny_model, tmp_path, monkeypatch
):
    import lmboost.generation.run as run_module

    prompts = [PROMPT, "Article: markets fell", "Question: who wrote"]
    rain = RainConfig(max_new_tokens=3, max_iterations=3, num_candidates=3, simulation_tokens=4)

    def config(out, **changes):
        settings = {"model": "tiny", "rain": rain, "goal": "positive", "trace": True}
        return GenerateRunConfig(out=out, **(settings | changes))

    whole = run_generate(config(tmp_path / "whole"), prompts, tiny_model)["results"]
    assert [r["index"] for r in whole] == [0, 1, 2]
    assert all(r["steps"] == len(r["trace"]) and r["tokens"] <= 3 for r in whole)

    original, calls, interrupt_at = run_module.rain_generate, [], [2]

    def counted(*args, **kwargs):
        """rain_generate, counting its prompts; Ctrl-C in the one numbered interrupt_at."""
        calls.append(args[1])
        if len(calls) in interrupt_at:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(run_module, "rain_generate", counted)
    with pytest.raises(KeyboardInterrupt):
        run_generate(config(out), prompts, tiny_model)
    lines = (out / "items.jsonl").read_text(encoding="utf-8").splitlines()
    assert [read["index"] for read in map(json.loads, lines)] == [0]  # just the finished one
    assert json.loads(lines[0])["text"] == whole[0]["text"]

    calls.clear()
    interrupt_at.clear()
    resumed = run_generate(config(out), prompts, tiny_model)["results"]
    assert calls == prompts[1:]  # the finished prompt is not searched again
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole
    ]
    with pytest.raises(LmboostError, match=r"max_iterations: 3 -> 4.*--restart"):
        run_generate(config(out, rain=dataclasses.replace(rain, max_iterations=4)), prompts,
                     tiny_model)
    with pytest.raises(LmboostError, match=r"goal: 'positive' -> 'harmless'"):
        run_generate(config(out, goal="harmless"), prompts, tiny_model)


def test_cli_greedy_equals_generate(tiny_model, tiny_model_dir, tmp_path):
    prompts = [PROMPT, "Article: markets fell"]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    out = tmp_path / "out"
    argv = ["generate", "--model", tiny_model_dir, "--device", "cpu", "--prompts",
            str(tmp_path / "prompts.txt"), "--max-new-tokens", "6", "--out", str(out)]
    assert main(argv) == 0
    texts = [item["text"] for item in read_json(out / "results.json")["results"]]
    expected = generate(tiny_model, prompts, GenerationConfig(max_new_tokens=6))
    assert texts == [e[0] for e in expected]


def test_cli_rejects_a_missing_prompts_file(tmp_path, capsys):
    argv = ["generate", "--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "Prompts file not found" in capsys.readouterr().err


def test_a_shared_evaluator_judges_every_run_and_summaries_of_the_records(tiny_model, tmp_path):
    """run_generate with a given SelfEvaluator: it does the judging (its memo fills), the output
    equals a run that builds the same evaluator itself, and a second run reuses its memo;
    summarise_run's means and same_rain_trace on those records."""
    prompts = [PROMPT, "Article: markets fell"]
    rain = RainConfig(max_new_tokens=3, max_iterations=3, num_candidates=3, simulation_tokens=4)

    def config(out, **changes):
        settings = {"model": "tiny", "rain": rain, "goal": "positive", "trace": True,
                    "chat": False}
        return GenerateRunConfig(out=tmp_path / out, **(settings | changes))

    own = run_generate(config("own"), prompts, tiny_model)["results"]
    shared = SelfEvaluator(tiny_model, resolve_goal("positive"), chat=False)
    first = run_generate(config("first"), prompts, tiny_model, evaluator=shared)["results"]
    judged = len(shared.memo)
    assert judged > 0
    assert [r["text"] for r in first] == [r["text"] for r in own]
    assert all(same_rain_trace(a["trace"], b["trace"]) for a, b in zip(first, own))
    again = run_generate(config("again"), prompts, tiny_model, evaluator=shared)["results"]
    assert len(shared.memo) == judged  # the same searches ask nothing new
    assert [r["text"] for r in again] == [r["text"] for r in own]

    with pytest.raises(LmboostError, match="judges the goal 'positive', not the config's"):
        run_generate(config("bad", goal="harmless"), prompts, tiny_model, evaluator=shared)
    with pytest.raises(LmboostError, match="with config.rain"):
        run_generate(GenerateRunConfig(out=tmp_path / "plain", model="tiny"), prompts,
                     tiny_model, evaluator=shared)

    summary = summarise_run(first)
    trace = [step for r in first for step in r["trace"]]
    assert summary["n"] == 2
    assert summary["seconds_per_prompt"] == pytest.approx(sum(r["seconds"] for r in first) / 2)
    assert summary["tokens_per_prompt"] == (first[0]["tokens"] + first[1]["tokens"]) / 2
    assert summary["steps_per_prompt"] == len(trace) / 2
    assert summary["iterations_per_prompt"] == sum(r["iterations"] for r in first) / 2
    assert summary["rewinds_per_prompt"] == sum(s["rewinds"] for s in trace) / 2
    assert summary["early_commit_share"] == (
        sum(s["stop"] == "thresholds" for s in trace) / len(trace))


def test_summarise_run_and_same_rain_trace_on_hand_made_records():
    step = {"iterations": 3, "rewinds": 1, "stop": "thresholds", "committed": " a",
            "children": [{"visits": 2.0, "value": 0.5}, {"visits": 1.0, "value": -0.25}]}
    late = {**step, "rewinds": 0, "stop": "budget"}
    records = [
        {"seconds": 1.0, "tokens": 2, "steps": 2, "iterations": 6, "trace": [step, late]},
        {"seconds": 3.0, "tokens": 1, "steps": 1, "iterations": 3, "trace": [late]},
    ]
    assert summarise_run(records) == {
        "n": 2, "seconds": 4.0, "seconds_per_prompt": 2.0, "tokens_per_prompt": 1.5,
        "iterations_per_prompt": 4.5, "steps_per_prompt": 1.5, "rewinds_per_prompt": 0.5,
        "early_commit_share": 1 / 3,
    }
    plain = summarise_run([{"seconds": 2.0, "text": "x"}])
    assert plain == {"n": 1, "seconds": 2.0, "seconds_per_prompt": 2.0}
    with pytest.raises(LmboostError, match="No records"):
        summarise_run([])
    near = {**step, "children": [{"visits": 2.0004, "value": 0.5}, {"visits": 1.0,
                                                                     "value": -0.2504}]}
    assert same_rain_trace([step, late], [near, late])
    assert not same_rain_trace([step], [{**step, "committed": " b"}])
    assert not same_rain_trace([step], [{**step, "children": step["children"][:1]}])
    assert not same_rain_trace([step], [step, late])
    far = {**step, "children": [{"visits": 2.0, "value": 0.502}, step["children"][1]]}
    assert not same_rain_trace([step], [far])
