"""``POST /v1/generate``: greedy decoding, sampling, self-consistency voting and RAIN, through the
server's backend. Model output is only ever returned as text (answers are read out of it with
:mod:`lmboost.reasoning.extract`, never executed)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lmboost.backends import Backend
from lmboost.decoding import RainConfig, rain_generate, resolve_goal
from lmboost.generation import CHAT_MODES, GenerationConfig
from lmboost.reasoning import majority_vote
from lmboost.reasoning.extract import extract_choice, extract_number
from lmboost.serving.config import ServeConfig
from lmboost.serving.engine import RequestError

EXTRACTORS = {"number": extract_number, "choice": extract_choice, "text": str.strip}


class GenerateRequest(BaseModel):
    """A prompt and how to decode it."""

    prompt: str = Field(min_length=1, examples=["What is 12 + 30? Answer with a number."])
    mode: Literal["greedy", "sample", "self-consistency", "rain"] = Field(
        "greedy",
        description="greedy; sample (n samples); self-consistency (n samples, answers voted); "
        "rain (RAIN search aligned to `goal`)",
    )
    max_new_tokens: int = Field(64, ge=1)
    n: int = Field(1, ge=1, description="samples (sample, self-consistency)")
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    seed: int | None = Field(None, description="makes sampling and RAIN repeatable")
    answer: Literal["number", "choice", "text"] = Field(
        "number", description="self-consistency: what is read out of each sample and voted on"
    )
    goal: str = Field("harmless", description="rain: harmless, positive or a yes/no question")
    max_iterations: int = Field(10, ge=1, description="rain: searches per step (T)")

    def check(self, config: ServeConfig, backend: Backend) -> None:
        """RequestError (422) naming the limit a request goes over."""
        if self.max_new_tokens > config.max_new_tokens:
            raise RequestError(
                f"max_new_tokens {self.max_new_tokens} is over this server's limit of "
                f"{config.max_new_tokens}."
            )
        if self.n > config.max_samples:
            raise RequestError(f"n {self.n} is over this server's limit of {config.max_samples}.")
        if len(self.prompt) > config.max_input_chars:
            raise RequestError(
                f"The prompt has {len(self.prompt)} characters; the limit is "
                f"{config.max_input_chars}: shorten it."
            )
        if self.mode == "rain":
            if backend.name != "hf":
                raise RequestError("RAIN needs the hf backend; this server runs "
                                   f"{backend.name}: use mode greedy, sample or self-consistency.")
            if self.max_iterations > config.max_rain_iterations:
                raise RequestError(
                    f"max_iterations {self.max_iterations} is over this server's limit of "
                    f"{config.max_rain_iterations}."
                )
            resolve_goal(self.goal)


def generate_answer(backend: Backend, body: GenerateRequest, config: ServeConfig) -> dict[str, Any]:
    """Run ``body`` on ``backend`` (on the model thread) and return the response object."""
    chat = CHAT_MODES[config.chat]
    if body.mode == "rain":
        result = rain_generate(
            backend, body.prompt,
            RainConfig(max_new_tokens=body.max_new_tokens, max_iterations=body.max_iterations,
                       seed=body.seed or 0),
            goal=body.goal, chat=chat,
        )
        return {"mode": "rain", "texts": [result.text], "goal": body.goal,
                "steps": result.steps, "iterations": result.iterations}
    sampling = body.mode != "greedy"
    settings = GenerationConfig(
        max_new_tokens=body.max_new_tokens, do_sample=sampling, temperature=body.temperature,
        top_k=body.top_k, top_p=body.top_p, seed=body.seed,
    )
    (texts,) = backend.generate([body.prompt], settings, n=body.n if sampling else 1, chat=chat)
    out: dict[str, Any] = {"mode": body.mode, "texts": texts}
    if body.mode == "self-consistency":
        answers = [EXTRACTORS[body.answer](t) for t in texts]
        vote, share = majority_vote(answers)
        out.update(answers=answers, vote=vote, agreement=share)
    return out
