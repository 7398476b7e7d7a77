"""The HTTP side of ``lmboost serve``: a FastAPI app over one model thread.

Requests for the same task that arrive within ``batch_wait_ms`` of each other (or while the
model is busy) are scored as one batch after the task's pinned prompt prefix; generation runs
on the same thread. Errors are JSON ``{"error": "what to change", ...}``: 401 without the API
key, 404 for an unknown task, 413 for a body over the limit, 422 for input that breaks a rule.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field

from lmboost import __version__
from lmboost.backends import Backend
from lmboost.errors import LmboostError, ServeConfigError
from lmboost.serving.config import ServeConfig
from lmboost.serving.engine import Answer, RequestError, TaskEngine
from lmboost.serving.generation import GenerateRequest, generate_answer

log = logging.getLogger("lmboost.serve")


class ClassifyRequest(BaseModel):
    """Inputs to classify with one served task."""

    task: str = Field(description="a task from GET /v1/tasks")
    inputs: list[str | dict[str, str]] = Field(
        min_length=1,
        description="texts (tasks with one field) or objects of the task's fields",
        examples=[["a gripping, funny film", "a dull, lifeless script"]],
    )


class Prediction(BaseModel):
    """One input's answer."""

    label: str = Field(description="calibrated when the calibrator is ready, else uncalibrated")
    probabilities: dict[str, float] = Field(description="what the label was chosen from")
    uncalibrated: dict[str, float]
    calibrated: dict[str, float] | None = Field(
        description="null while the calibrator's estimate has seen fewer than min_examples"
    )
    calibrator: dict[str, Any] = Field(description="method, n_seen, ready, ...")


class ClassifyResponse(BaseModel):
    task: str
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    error: str


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lmboost_requests", "HTTP requests by endpoint and status",
            ["endpoint", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "lmboost_request_seconds", "Request latency by endpoint", ["endpoint"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.batch = Histogram(
            "lmboost_batch_inputs", "Inputs per scored batch", ["task"], registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.seen = Gauge(
            "lmboost_calibrator_inputs", "Inputs the task's calibrator estimate has seen",
            ["task"], registry=self.registry,
        )


class Batcher:
    """Gathers one task's concurrent requests into batches run on the model thread."""

    def __init__(
        self, engine: TaskEngine, executor: ThreadPoolExecutor, config: ServeConfig,
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.wait_s = config.batch_wait_ms / 1000
        self.max_batch = config.max_batch
        self.metrics = metrics
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker: asyncio.Task | None = None

    def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, examples: list) -> list[Answer]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((examples, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            size = len(items[0][0])
            deadline = loop.time() + self.wait_s
            while size < self.max_batch:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), timeout)
                    except TimeoutError:
                        break
                items.append(item)
                size += len(item[0])
            await self._score(items)

    async def _score(self, items: list) -> None:
        loop = asyncio.get_running_loop()
        examples = [ex for exs, _ in items for ex in exs]
        answers, error = None, None
        try:
            answers = await loop.run_in_executor(self.executor, self.engine.classify, examples)
        except LmboostError as err:
            if len(items) > 1:  # one request's input failed the batch: answer each alone
                for item in items:
                    await self._score([item])
                return
            error = RequestError(str(err))
        except Exception as err:  # noqa: BLE001 - handed to the waiting request as a 500
            error = err
        self.metrics.batch.labels(self.engine.name).observe(len(examples))
        self.metrics.seen.labels(self.engine.name).set(self.engine.state().get("n_seen", 0))
        start = 0
        for exs, future in items:
            if future.done():
                continue
            if answers is None:
                future.set_exception(error)
            else:
                future.set_result(answers[start : start + len(exs)])
            start += len(exs)

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with suppress(asyncio.CancelledError):
                await self.worker


def create_app(config: ServeConfig, backend: Backend, engines: list[TaskEngine]) -> FastAPI:
    """The app serving ``engines`` (built on ``backend``) under ``config``'s limits."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmboost-model")
    metrics = Metrics()
    by_name = {e.name: e for e in engines}
    batchers: dict[str, Batcher] = {}
    token = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
    if config.api_key_env and not token:
        raise ServeConfigError(
            f"api_key_env names {config.api_key_env}, which is unset or empty: export "
            f"{config.api_key_env}=<a secret token>, or drop api_key_env to serve without one."
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for engine in engines:
            batchers[engine.name] = Batcher(engine, executor, config, metrics)
            batchers[engine.name].start()
            metrics.seen.labels(engine.name).set(engine.state().get("n_seen", 0))
        yield
        for batcher in batchers.values():
            await batcher.stop()
        executor.shutdown(wait=True)
        for engine in engines:
            engine.save()
        log.info("calibrator state saved to %s", config.state_dir)

    app = FastAPI(
        title="lmboost serve",
        version=__version__,
        description="Calibrated few-shot classification and aligned generation with one small "
        "language model. Errors are JSON objects whose `error` says what to change.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse}},
    )

    def authorised(request: Request) -> None:
        if not token:
            return
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise _HTTPError(401, "Send the API key as the header `Authorization: Bearer <key>`.")

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        endpoint = request.scope.get("route").path if request.scope.get("route") else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(_HTTPError)
    async def http_error(request: Request, err: _HTTPError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
            for e in err.errors()
        ]
        return JSONResponse(
            {"error": "The request body does not match the schema (see /docs): "
             + "; ".join(problems[:5])},
            status_code=422,
        )

    @app.exception_handler(LmboostError)
    async def lmboost_error(request: Request, err: LmboostError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("lmboost.serving").joinpath("page.html").read_text("utf-8")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the model is loaded and the tasks are ready."""
        return {"status": "ok", "model": backend.spec, "tasks": list(by_name)}

    @app.get("/metrics", dependencies=[Depends(authorised)], include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/tasks", dependencies=[Depends(authorised)])
    async def tasks() -> dict[str, Any]:
        """The served tasks: labels, fields, shots and calibrator state."""
        return {"model": backend.describe(), "tasks": [e.describe() for e in engines]}

    @app.post(
        "/v1/classify", dependencies=[Depends(authorised)], response_model=ClassifyResponse,
        responses={404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    )
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        """Label each input, with probabilities uncalibrated and calibrated (BC's running
        estimate is updated by these inputs first)."""
        engine = by_name.get(body.task)
        if engine is None:
            raise _HTTPError(404, f"Unknown task {body.task!r}; served tasks: "
                                  f"{', '.join(by_name)} (GET /v1/tasks).")
        check_inputs(body.inputs, config)
        answers = await batchers[engine.name].submit(engine.examples(body.inputs))
        return {
            "task": engine.name,
            "predictions": [
                {"label": a.label, "probabilities": a.calibrated or a.uncalibrated,
                 "uncalibrated": a.uncalibrated, "calibrated": a.calibrated,
                 "calibrator": a.calibrator}
                for a in answers
            ],
        }

    @app.post("/v1/generate", dependencies=[Depends(authorised)])
    async def generate(body: GenerateRequest) -> dict[str, Any]:
        """Greedy decoding, sampling, self-consistency voting or RAIN (with its goal)."""
        body.check(config, backend)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, generate_answer, backend, body, config)

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


def check_inputs(inputs: list, config: ServeConfig) -> None:
    """422 (RequestError) when a request holds too many inputs or one too long."""
    if len(inputs) > config.max_inputs:
        raise RequestError(
            f"{len(inputs)} inputs in one request; send at most {config.max_inputs} "
            "(split the list over several requests)."
        )
    for i, value in enumerate(inputs):
        texts = [value] if isinstance(value, str) else list(value.values())
        longest = max((len(t) for t in texts), default=0)
        if longest > config.max_input_chars:
            raise RequestError(
                f"inputs[{i}] has {longest} characters; the limit is {config.max_input_chars}: "
                "shorten it."
            )


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is parsed."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        response = JSONResponse(
            {"error": f"The request body is over the server's limit of {self.limit} bytes: "
                      "send fewer or shorter inputs per request."},
            status_code=413,
        )
        await response({"type": "http"}, None, send)

