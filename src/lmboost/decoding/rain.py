"""RAIN: rewindable auto-regressive inference (Li et al., ICLR 2024, arXiv 2309.07124).

A frozen language model aligns its own output while decoding, with no training: before it commits
the next token set Y_{i:j}, it searches a tree of continuations and scores them by asking itself
whether the text meets a goal (harmless, by default). Nodes are token sets whose length grows with
depth (1, 2, 4, then 10 tokens). The outer loop commits one token set per step; its inner loop
repeats, up to T times:

1. Search    descend from the root, at each node to the child Y_{i:j} maximising
                 v^(Y_{i:j}) + c p(Y_{i:j} | Y_{1:i-1}) sqrt(N(Y_{1:i-1})) / (1 + n(Y_{i:j}))
             (v^: the value normalised by the running min and max; N, n: visit counts; c = 2),
             until a leaf. On the way, a node whose children look alike (all pairwise embedding
             similarities high) and all score poorly gets one more child (dynamic widening, up to
             20 children).
2. Simulate  sample on from the leaf to the end of the sentence (". ! ? newline") or a cap.
3. Evaluate  the model judges prompt + committed + path + simulation: the value s in [-1, 1].
4. Expand    the leaf gets q = 10 candidate token sets (single tokens: the q most probable;
             longer sets: the greedy one and samples from the top 15 tokens), with priors
             p = their sequence probabilities normalised over the candidates (at the root mixed
             0.75 / 0.25 with uniform).
5. Backward  every node Y on the path: n(Y) += 1, v(Y) += (s - v(Y)) / n(Y). Every sibling X of
             a path node whose embedding has cosine similarity s_xy >= 0.95 with Y's:
             n(X) += gamma s_xy and v(X) += gamma s_xy (s - v(X)) / n(X)   (gamma = 0.2).

The inner loop stops as soon as the most-visited child of the root has n > T_m and v > V (0.8);
when the T iterations run out first, the most-visited child is committed anyway, as in the paper's
Algorithm 1 and the authors' code (``move = root.get_max_n_action()`` whatever the values): each
iteration already rewinds to the root, and the visit counts have steered the search away from
poorly judged branches. The committed child becomes the new root and keeps its subtree; the
visits it inherits count towards the next step's T, but every step runs at least 15 new searches
(the authors' ``range(root.fn, max(T, root.fn + 15))``). Decoding stops at EOS or max_new_tokens.

Speed: the prompt and the committed text are encoded once, in a KV cache extended at each commit
and shared by every search of every step. A search copies that cache and runs the path; the
leaf's simulation and its q candidates then decode as one batch from the leaf's state, each
forward running one token of each row still going, rows with the same tokens so far (the greedy
candidate and the simulation often agree for a while) run once; the output head runs at the last
position only. The judge runs both orders of its question after the KV cache of all they share,
kept from the last question (the committed text is not run again; see ``evaluator.py``); judged
and embedded texts are memoised. On a CPU one forward of a few rows costs about what one row
does, so the batch's length, not its width, sets the time: the simulation's tokens (to the end
of a sentence) are most of it.

Order: simulations and candidates draw from two torch Generators, seeded per step, each in the
order of the searches; decoding a leaf's simulation and candidates apart (``batched=False``)
gives the same tokens and the same tree, to float round-off. ``parallel = K`` (an option,
changing the search) runs K searches per round as one batch: each descends with the paths of
the round so far counted as visits valued at the lowest value seen (virtual losses, as in
parallel MCTS), then the K simulations and expansions decode together (paths of different
lengths padded), the K judgements and embeddings run as one batch each, and the K values back
up in order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lmboost.backends.hf import HFBackend, KVState
from lmboost.decoding.evaluator import ModelEmbedder, SelfEvaluator, hf_backend
from lmboost.decoding.goals import Goal, resolve_goal
from lmboost.generation import GenerationError, Prompt, encode_prompt, resolve_chat
from lmboost.models.loading import LoadedModel

#: (prompt, response) -> value in [-1, 1]: how well the response meets the goal.
Evaluator = Callable[[str, str], float]
#: texts -> (len(texts), d) tensor of embeddings.
Embedder = Callable[[Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class RainConfig:
    """RAIN's settings: the paper's (and the authors' code's) values by default, except T (the
    paper's 50) and the length (its 128 tokens), cut to what a CPU runs in a couple of minutes
    per prompt (time grows linearly with T; see docs/rain-results.md)."""

    max_new_tokens: int = 64
    max_iterations: int = 10  # T: searches per step, inherited visits included
    min_new_iterations: int = 15  # new searches per step, at least (capped by T)
    min_visits: float = 6  # T_m: a child is committed early once n > T_m ...
    value_threshold: float = 0.8  # V: ... and v > V
    c_puct: float = 2.0  # c
    num_candidates: int = 10  # q: token sets proposed per expansion
    top_k: int = 15  # candidates other than the greedy one are sampled from the top k tokens
    token_set_lengths: tuple[int, ...] = (1, 2, 4, 10)  # by depth; the last one repeats
    root_uniform_mix: float = 0.25  # root priors: 0.75 p + 0.25 / (number of children)
    similarity_threshold: float = 0.95  # siblings this similar share a backed-up value ...
    similarity_weight: float = 0.2  # gamma: ... with weight gamma * similarity
    max_children: int = 20  # dynamic widening stops here
    widen_similarity: float = 0.95  # widen when every pair of children is this similar ...
    widen_value: float = 0.0  # ... and no child's value reaches this
    simulation_tokens: int = 32  # cap on the simulated continuation (ours; the code has none)
    sentence_ends: tuple[str, ...] = (".", "!", "?", "\n")
    value_bounds: tuple[float, float] = (-1.0, 1.0)  # the running min/max start at the value scale
    seed: int = 0
    batched: bool = True  # simulations and candidates decoded as one batch (same result)
    parallel: int = 1  # searches per round, with virtual losses (1: the paper's order)

    def validate(self) -> None:
        """Raise GenerationError naming the first bad setting."""
        positive = ("max_new_tokens", "max_iterations", "min_new_iterations", "num_candidates",
                    "top_k", "max_children", "parallel")
        for name in positive:
            if getattr(self, name) < 1:
                raise GenerationError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if not self.token_set_lengths or min(self.token_set_lengths) < 1:
            raise GenerationError("token_set_lengths must be a non-empty tuple of lengths >= 1.")
        if not 0 <= self.root_uniform_mix <= 1:
            raise GenerationError(
                f"root_uniform_mix must be in [0, 1], not {self.root_uniform_mix}."
            )
        if self.simulation_tokens < 0:
            raise GenerationError(f"simulation_tokens must be >= 0, not {self.simulation_tokens}.")


@dataclass(eq=False)
class Node:
    """A token set Y_{i:j} of the search tree with its statistics."""

    tokens: tuple[int, ...] = ()
    depth: int = 0  # 0 for the first root; the length of its children's sets depends on it
    logp: float = 0.0  # log p(Y_{i:j} | Y_{1:i-1}), summed over the set
    prior: float = 0.0  # p in the PUCT score, normalised over the siblings
    n: float = 0.0  # visit count (similarity updates add fractions)
    v: float = 0.0  # mean value of the evaluations backed up through it
    visits: int = 0  # times on a searched path: weights the running mean of the embedding
    embedding: torch.Tensor | None = None
    children: list[Node] = field(default_factory=list)


@dataclass
class ValueBounds:
    """The running min and max of the values seen, for v^ = (v - lo) / (hi - lo)."""

    lo: float
    hi: float

    def update(self, value: float) -> None:
        """Widen the bounds to include ``value``."""
        self.lo, self.hi = min(self.lo, value), max(self.hi, value)

    def normalise(self, value: float) -> float:
        """``value`` mapped to [0, 1] by the bounds (0 while they are empty)."""
        return (value - self.lo) / (self.hi - self.lo) if self.hi > self.lo else 0.0


@dataclass
class RainResult:
    """One prompt decoded by RAIN: the text, its cost, and per step the search's trace."""

    text: str
    tokens: int  # tokens generated
    seconds: float
    steps: int  # token sets committed
    iterations: int  # inner-loop searches over all steps
    trace: list[dict]


# --- the tree rules, one function each -------------------------------------------------------


def puct_score(
    child: Node, parent_n: float, c: float, bounds: ValueBounds, virtual: int = 0
) -> float:
    """v^(child) + c p sqrt(N_parent) / (1 + n); an unvisited child's v^ counts as 0. A virtual
    loss: ``virtual`` searches in flight through the child count as visits valued at the lowest
    value seen (v^ = 0)."""
    n = child.n + virtual
    if virtual:
        exploit = bounds.normalise((child.v * child.n + bounds.lo * virtual) / n)
    else:
        exploit = bounds.normalise(child.v) if child.n > 0 else 0.0
    return exploit + c * child.prior * math.sqrt(parent_n) / (1 + n)


def select_child(
    node: Node, c: float, bounds: ValueBounds, virtual: dict[int, int] | None = None
) -> Node:
    """The child with the highest PUCT score (the first of equals); ``virtual[id(node)]``:
    the searches in flight through a node (virtual losses, see :func:`puct_score`)."""
    virtual = virtual or {}
    parent_n = node.n + virtual.get(id(node), 0)
    return max(
        node.children,
        key=lambda child: puct_score(child, parent_n, c, bounds, virtual.get(id(child), 0)),
    )


def set_priors(node: Node, uniform_mix: float) -> None:
    """Priors of ``node``'s children: softmax of their sequence log-probs (= their probabilities
    normalised), mixed with uniform by ``uniform_mix`` (the root's 0.25; 0 elsewhere)."""
    probs = torch.tensor([child.logp for child in node.children], dtype=torch.float64).softmax(0)
    for child, p in zip(node.children, probs.tolist()):
        child.prior = (1 - uniform_mix) * p + uniform_mix / len(node.children)


def backup(
    path: list[Node],
    value: float,
    embeddings: Sequence[torch.Tensor],
    bounds: ValueBounds,
    threshold: float,
    weight: float,
) -> None:
    """Backward step: count the visit and average ``value`` into every node of ``path`` (root
    first); then each non-root path node takes the embedding of its continuation (``embeddings[i]``
    for ``path[i + 1]``, averaged over its visits) and passes the value, with weight
    ``weight * similarity``, to every sibling at least ``threshold`` similar to it."""
    for node in path:
        node.n += 1
        node.v += (value - node.v) / node.n
    for parent, node, embedding in zip(path, path[1:], embeddings):
        node.visits += 1
        if node.embedding is None:
            node.embedding = embedding.clone()
        else:
            node.embedding += (embedding - node.embedding) / node.visits
        bounds.update(node.v)
        for sibling in parent.children:
            if sibling is node or sibling.embedding is None:
                continue
            similarity = F.cosine_similarity(node.embedding, sibling.embedding, dim=0).item()
            if similarity >= threshold:
                sibling.n += weight * similarity
                sibling.v += weight * similarity * (value - sibling.v) / sibling.n


def should_widen(node: Node, max_children: int, similarity: float, value: float) -> bool:
    """Dynamic widening: ``node`` has fewer than ``max_children`` children, all of them embedded,
    every pair at least ``similarity`` alike, and none with a value reaching ``value``."""
    children = node.children
    if not children or len(children) >= max_children:
        return False
    if any(child.embedding is None for child in children):
        return False
    if max(child.v for child in children) >= value:
        return False
    if len(children) == 1:
        return True
    unit = F.normalize(torch.stack([child.embedding for child in children]), dim=1)
    sims = unit @ unit.T
    return bool(sims[~torch.eye(len(children), dtype=torch.bool)].min() >= similarity)


def best_child(node: Node) -> Node:
    """The most-visited child (of equals, the higher value): the one RAIN commits."""
    return max(node.children, key=lambda child: (child.n, child.v))


def ready_to_commit(child: Node, min_visits: float, value_threshold: float) -> bool:
    """The early stop of the inner loop: n > T_m and v > V."""
    return child.n > min_visits and child.v > value_threshold


def _sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (rows x k), by inverse CDF in float64 with one uniform per
    row from ``generator``: a row's draw does not depend on the other rows."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand(len(probs), 1, dtype=torch.float64, device=probs.device, generator=generator)
    drawn = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    return drawn.clamp(max=probs.shape[-1] - 1)


@dataclass
class _Rollout:
    """One leaf's share of a rollout batch: the simulation after ``response`` (none when None)
    and candidate token sets of ``length`` (none when 0) not in ``exclude``; then the results."""

    response: list[int] | None
    length: int = 0
    exclude: set[tuple[int, ...]] = field(default_factory=set)
    simulated: list[int] = field(default_factory=list)
    candidates: list[tuple[tuple[int, ...], float]] = field(default_factory=list)


# --- the search on a model ---------------------------------------------------------------------


class _Search:
    """One prompt's decoding: the committed prefix and its KV cache, the tree, the value bounds."""

    def __init__(
        self,
        model: HFBackend | LoadedModel,
        prompt_ids: list[int],
        user: str,
        reply: str,
        config: RainConfig,
        evaluator: Evaluator,
        embedder: Embedder,
    ) -> None:
        backend = hf_backend(model)
        self.tokenizer, self.device = backend.tokenizer, backend.device
        self.config, self.user, self.reply = config, user, reply
        self.evaluate, self.embed = evaluator, embedder
        self.eos = backend.eos_token_ids
        self.eos_ids = torch.tensor(sorted(self.eos), dtype=torch.long, device=self.device)
        self.window = backend.context_window
        self.max_new = min(config.max_new_tokens, self.window - len(prompt_ids))
        self.prompt_len = len(prompt_ids)
        self.committed: list[int] = []
        self.state = backend.prefill(prompt_ids)  # the committed text; next-token logits after it
        self.root = Node()
        self.bounds = ValueBounds(*config.value_bounds)
        self.generators = {
            purpose: torch.Generator(device=self.device) for purpose in ("simulate", "propose")
        }

    def done(self) -> bool:
        """EOS committed, or max_new_tokens reached."""
        return len(self.committed) >= self.max_new or bool(self.eos & set(self.committed))

    def text(self) -> str:
        """The committed continuation, up to EOS."""
        return self._decode(self.committed)

    def step(self, index: int, report: Callable[[int, int], None] | None = None) -> dict:
        """The inner loop for one commit, then the commit; returns the step's trace.
        ``report(iterations, rewinds)`` is called after each round of searches."""
        cfg = self.config
        for offset, generator in enumerate(self.generators.values()):
            generator.manual_seed((cfg.seed * 1_000_003 + index) * 2 + offset)
        budget = max(
            cfg.max_iterations - self.root.visits, min(cfg.min_new_iterations, cfg.max_iterations)
        )
        iterations = rewinds = 0
        early = False
        previous = None
        while iterations < budget and not early:
            for first in self.iterate(min(cfg.parallel, budget - iterations)):
                iterations += 1
                if previous is not None and first is not None and first is not previous:
                    rewinds += 1  # the search left the root branch it went down last time
                previous = first
            early = ready_to_commit(best_child(self.root), cfg.min_visits, cfg.value_threshold)
            if report is not None:
                report(iterations, rewinds)
        chosen = best_child(self.root)
        record = {
            "step": index,
            "iterations": iterations,
            "rewinds": rewinds,
            "stop": "thresholds" if early else "budget",
            "committed": self._decode(list(chosen.tokens)),
            "chosen": self.root.children.index(chosen),
            "children": [
                {
                    "text": self._decode(list(child.tokens)),
                    "visits": round(child.n, 4),
                    "value": round(child.v, 4),
                    "prior": round(child.prior, 4),
                }
                for child in self.root.children
            ],
        }
        self._commit(chosen)
        return record

    def iterate(self, size: int = 1) -> list[Node | None]:
        """One round of ``size`` inner-loop searches (select, simulate, evaluate, expand, back
        up); returns, per search, the root child it went through (None when it evaluated the
        root itself). One search is the paper's iteration. Several descend in turn, each path
        given a virtual loss that steers the next ones elsewhere (up to 2 ``size`` descents for
        ``size`` distinct leaves), then run as one batch and back up in order."""
        cfg = self.config
        virtual: dict[int, int] = {}  # id(node) -> searches of this round through it
        paths: list[list[Node]] = []
        for _ in range(2 * size):  # a leaf met again takes one more virtual loss, no search
            path = self._select(virtual)
            for node in path:
                virtual[id(node)] = virtual.get(id(node), 0) + 1
            if not any(path[-1] is other[-1] for other in paths):
                paths.append(path)
            if len(paths) == size:
                break
        tokens = [[t for node in path[1:] for t in node.tokens] for path in paths]
        responses = [self.committed + t for t in tokens]
        # 2. Simulation to the end of the sentence and 4. expansion of each non-terminal leaf:
        # the simulations and candidates of the round decoded as one batch (``batched``).
        rollouts = {
            i: _Rollout(responses[i], self._set_length(path[-1], len(responses[i])))
            for i, path in enumerate(paths)
            if not (len(responses[i]) >= self.max_new or self.eos & set(path[-1].tokens))
        }
        if rollouts:
            state, logits = self._advance([tokens[i] for i in rollouts])
            jobs = list(rollouts.values())
            if cfg.batched:
                self._rollouts(state, logits, jobs)
            else:
                for row, job in enumerate(jobs):  # apart: the simulation, then the candidates
                    one = state.fork().select([row])
                    simulation, proposals = _Rollout(job.response), _Rollout(None, job.length)
                    self._rollouts(one.fork(), logits[row : row + 1], [simulation])
                    self._rollouts(one, logits[row : row + 1], [proposals])
                    job.simulated, job.candidates = simulation.simulated, proposals.candidates
        for i, job in rollouts.items():
            leaf = paths[i][-1]
            leaf.children = [
                Node(tokens=t, depth=leaf.depth + 1, logp=lp) for t, lp in job.candidates
            ]
            set_priors(leaf, cfg.root_uniform_mix if leaf is self.root else 0.0)
        simulated = [rollouts[i].simulated if i in rollouts else [] for i in range(len(paths))]
        # 3. Self-evaluation of each whole text, 5. backward, each path node embedded by its
        # continuation (its tokens on): the round's judgements and embeddings in one batch each.
        values = self._judge(
            [self.reply + self._decode(r + sim) for r, sim in zip(responses, simulated)]
        )
        texts = []
        for path, path_tokens, sim in zip(paths, tokens, simulated):
            starts, offset = [], 0
            for node in path[1:]:
                starts.append(offset)
                offset += len(node.tokens)
            texts.append([self._decode(path_tokens[start:] + sim) for start in starts])
        flat = [text for group in texts for text in group]
        embedded = iter(self.embed(flat) if flat else [])
        for path, value, group in zip(paths, values, texts):
            embeddings = [next(embedded) for _ in group]
            backup(path, value, embeddings, self.bounds, cfg.similarity_threshold,
                   cfg.similarity_weight)
        return [path[1] if len(path) > 1 else None for path in paths]

    def _select(self, virtual: dict[int, int]) -> list[Node]:
        """1. Search: the PUCT descent from the root to a leaf, widening look-alike, poorly
        valued nodes on the way; ``virtual[id(node)]`` searches of the round already went
        through a node, each counted as a visit that judged it the worst value."""
        cfg = self.config
        path = [self.root]
        while path[-1].children:
            node = path[-1]
            if should_widen(node, cfg.max_children, cfg.widen_similarity, cfg.widen_value):
                self._widen(path)
            path.append(select_child(node, cfg.c_puct, self.bounds, virtual))
        return path

    def _judge(self, responses: list[str]) -> list[float]:
        """The values of ``responses`` to the prompt: one batch when the evaluator takes one."""
        if isinstance(self.evaluate, SelfEvaluator):
            return self.evaluate.values(self.user, responses)
        return [self.evaluate(self.user, response) for response in responses]

    def _set_length(self, node: Node, used: int) -> int:
        """The length of the token sets below ``node``: by its depth, capped by the tokens that
        max_new_tokens leaves after ``used`` (committed and path tokens down to ``node``)."""
        lengths = self.config.token_set_lengths
        return min(lengths[min(node.depth, len(lengths) - 1)], self.max_new - used)

    def _widen(self, path: list[Node]) -> None:
        """Give ``path[-1]`` one more child: a new candidate of the length set for its depth (not
        an existing child's, which is shorter when that one ended at EOS)."""
        node = path[-1]
        path_tokens = [t for n in path[1:] for t in n.tokens]
        state, logits = self._advance([path_tokens])
        existing = {child.tokens for child in node.children}
        length = self._set_length(node, len(self.committed) + len(path_tokens))
        for tokens, logp in self._propose(state, logits, length, exclude=existing)[:1]:
            node.children.append(Node(tokens=tokens, depth=node.depth + 1, logp=logp))
        set_priors(node, self.config.root_uniform_mix if node is self.root else 0.0)

    def _commit(self, child: Node) -> None:
        """Commit ``child``'s token set: extend the prefix cache, make it the root, re-mix the
        priors of its children as root priors."""
        self.committed += child.tokens
        self.state.extend([list(child.tokens)])
        self.root = child
        if child.children:
            set_priors(child, self.config.root_uniform_mix)

    def _propose(
        self, state: KVState, logits: torch.Tensor, length: int, exclude: set[tuple[int, ...]]
    ) -> list[tuple[tuple[int, ...], float]]:
        """Up to q distinct token sets of ``length`` after the cached text (one row), none in
        ``exclude`` (see :meth:`_rollouts`). Consumes ``state``."""
        job = _Rollout(None, length, exclude)
        self._rollouts(state, logits, [job])
        return job.candidates

    def _rollouts(self, state: KVState, logits: torch.Tensor, jobs: list[_Rollout]) -> None:
        """Fill in each job's simulation and candidates, from row i of ``state`` (next-token
        ``logits[i]``) for ``jobs[i]``, decoded as one batch whose forwards run only the rows
        still going, and rows with the same tokens since the same leaf as one row:

        * the simulation, unless the job's response is None: sampling on after the response
          until the text ends a sentence, EOS, or the cap;
        * up to q distinct token sets of the job's length (none when 0), none in its
          ``exclude``, each with its summed log-prob: single tokens are the q most probable
          ones; longer sets are the greedy one and q - 1 samples from the top k (cut after EOS,
          duplicates dropped).

        Simulations and candidates draw from generators of their own, each in the order of the
        jobs, so for one job decoding them together or apart gives the same tokens. Consumes
        ``state``."""
        cfg = self.config
        caps, simulating, sizes = [], [], []
        for job in jobs:
            cap = 0
            if job.response is not None and not self._sentence_ended(job.response):
                cap = min(cfg.simulation_tokens, self.window - self.prompt_len - len(job.response))
            caps.append(cap)
            simulating.append(cap > 0)
            sizes.append(cfg.num_candidates if job.length > 1 else 0)
        sets: list[list[torch.Tensor]] = [[] for _ in jobs]  # per job: tokens per position
        totals = [torch.zeros(q, dtype=torch.float64, device=self.device) for q in sizes]
        alive = [torch.ones(q, dtype=torch.bool, device=self.device) for q in sizes]
        # Rows with the same tokens since the same leaf share one row of the batch (and its KV).
        where = {(i, ()): i for i in range(len(jobs))}  # (job, tokens since its leaf) -> row
        batch = logits
        while True:
            going: list[tuple[int, tuple[int, ...]]] = []  # the rows that go on
            for i, job in enumerate(jobs):
                if simulating[i]:
                    row = batch[where[(i, tuple(job.simulated))]]
                    token = int(_sample(row[None].softmax(-1), self.generators["simulate"])[0])
                    job.simulated.append(token)
                    simulating[i] = not (
                        len(job.simulated) >= caps[i] or token in self.eos
                        or self._sentence_ended(job.response + job.simulated)
                    )
                    if simulating[i]:
                        going.append((i, tuple(job.simulated)))
                q = sizes[i]
                if q and len(sets[i]) < job.length:
                    so_far = [()] * q
                    if sets[i]:
                        so_far = [tuple(r) for r in torch.stack(sets[i], 1).tolist()]
                    logp = batch[[where[(i, h)] for h in so_far]].log_softmax(-1)
                    chosen = logp.argmax(-1)  # row 0 stays greedy; the others are sampled
                    if q > 1:
                        top = logp[1:].topk(min(cfg.top_k, logp.shape[-1]))
                        drawn = _sample(top.values.softmax(-1), self.generators["propose"])
                        chosen[1:] = top.indices.gather(1, drawn[:, None]).squeeze(1)
                    picked = logp.gather(1, chosen[:, None]).squeeze(1).double()
                    totals[i] += torch.where(alive[i], picked, 0.0)
                    alive[i] &= ~torch.isin(chosen, self.eos_ids)
                    sets[i].append(chosen)
                    if len(sets[i]) < job.length:
                        going += [(i, h + (t,)) for h, t in zip(so_far, chosen.tolist())]
            rows = list(dict.fromkeys(going))
            if not rows:
                break
            state.select([where[(i, h[:-1])] for i, h in rows])
            batch = state.extend([[h[-1]] for _, h in rows])
            where = {key: row for row, key in enumerate(rows)}
        for i, job in enumerate(jobs):
            job.candidates = self._candidates(logits[i], job, sets[i], totals[i])

    def _candidates(
        self, logits: torch.Tensor, job: _Rollout, sets: list[torch.Tensor], totals: torch.Tensor
    ) -> list[tuple[tuple[int, ...], float]]:
        """The distinct token sets of a rollout with their log-probs: the q most probable single
        tokens for sets of one token; else the decoded rows, cut after EOS."""
        cfg = self.config
        candidates: dict[tuple[int, ...], float] = {}
        if job.length == 1:
            logp = logits.log_softmax(-1)
            count = min(cfg.num_candidates + len(job.exclude), logp.numel())
            picks = [t for t in logp.topk(count).indices.tolist() if (t,) not in job.exclude]
            candidates = {(t,): logp[t].item() for t in picks[: cfg.num_candidates]}
        elif sets:
            for row, score in zip(torch.stack(sets, 1).tolist(), totals.tolist()):
                cut = next((i + 1 for i, t in enumerate(row) if t in self.eos), len(row))
                tokens = tuple(row[:cut])
                if tokens not in job.exclude and tokens not in candidates:
                    candidates[tokens] = score
        return list(candidates.items())

    def _sentence_ended(self, ids: list[int]) -> bool:
        return bool(ids) and self._decode(ids).endswith(self.config.sentence_ends)

    def _advance(self, paths: list[list[int]]) -> tuple[KVState, torch.Tensor]:
        """A copy of the committed state extended by each of ``paths`` (a row each; paths of
        different lengths padded), and the next-token logits after each."""
        state = self.state.fork()
        if len(paths) > 1:
            return state, state.select([0] * len(paths)).extend_rows(paths)
        return state, state.extend(paths) if paths[0] else state.logits

    def _decode(self, ids: list[int]) -> str:
        cut = next((i for i, t in enumerate(ids) if t in self.eos), len(ids))
        return self.tokenizer.decode(ids[:cut], skip_special_tokens=True)


@torch.inference_mode()
def rain_generate(
    model: HFBackend | LoadedModel,
    prompt: Prompt,
    config: RainConfig | None = None,
    *,
    goal: Goal | str = "harmless",
    evaluator: Evaluator | None = None,
    embedder: Embedder | None = None,
    chat: bool | None = None,
    progress: str | None = None,
) -> RainResult:
    """Decode one prompt with RAIN, aligning the continuation to ``goal``.

    ``evaluator`` defaults to the model judging itself (:class:`SelfEvaluator` for ``goal``),
    ``embedder`` to its mean-pooled last hidden states (:class:`ModelEmbedder`); pass shared ones
    to reuse their memo across prompts. ``chat`` as in :func:`lmboost.generation.generate`.
    ``progress``: the label of a progress line on stderr, updated after every round of searches
    (tokens committed, step, searches and rewinds so far); None for none.
    """
    config = config or RainConfig()
    config.validate()
    backend = hf_backend(model)
    if backend.loaded.is_encoder:
        raise GenerationError(f"'{backend.spec}' is an encoder; RAIN needs a causal LM.")
    use_chat = resolve_chat(backend.tokenizer, chat)
    prompt_ids = encode_prompt(backend.tokenizer, prompt, use_chat)
    if len(prompt_ids) >= backend.context_window:
        raise GenerationError(
            f"The prompt has {len(prompt_ids)} tokens but the model's context window is "
            f"{backend.context_window}: shorten it."
        )
    user, reply = (prompt, "") if isinstance(prompt, str) else prompt
    if evaluator is None:
        evaluator = SelfEvaluator(
            backend, resolve_goal(goal) if isinstance(goal, str) else goal, chat=chat
        )
    start = time.perf_counter()
    search = _Search(
        backend, prompt_ids, user, reply, config, evaluator, embedder or ModelEmbedder(backend)
    )
    trace: list[dict] = []
    bar = tqdm(total=search.max_new, desc=progress, unit="tok", disable=progress is None,
               leave=True, dynamic_ncols=True)

    def report(iterations: int, rewinds: int) -> None:
        bar.set_postfix(step=len(trace) + 1,
                        searches=sum(r["iterations"] for r in trace) + iterations,
                        rewinds=sum(r["rewinds"] for r in trace) + rewinds, refresh=True)

    while not search.done():
        trace.append(search.step(len(trace), report))
        bar.update(len(search.committed) - bar.n)
    bar.close()
    return RainResult(
        text=search.text(),
        tokens=len(search.committed),
        seconds=time.perf_counter() - start,
        steps=len(trace),
        iterations=sum(record["iterations"] for record in trace),
        trace=trace,
    )
