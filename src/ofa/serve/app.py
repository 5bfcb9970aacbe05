"""The FastAPI application: ``create_app(ofa, settings)``.

One POST endpoint per task of :data:`ofa.tasks.TASKS` (``/v1/caption`` ...), each taking
JSON (image as base64) or multipart (image as a file); ``/healthz``, ``/v1/models``,
``/v1/tasks`` (what each endpoint takes, for the page), ``/metrics`` and the web page at
``/``. Requests are parsed and their images decoded on the event loop's side (decoding in a
worker thread), then queued to the dynamic batcher, which runs the model in its own threads.
Candidate-scoring requests are priced first (:mod:`.cost`) and refused if over budget.
Every refusal is an ``{"detail": ...}`` body with a 4xx/5xx status chosen so that a client
knows what to do: fix the request (400, 408, 413, 415, 422), authenticate (401) or retry
later (503 with Retry-After, 504).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import OFAError
from .batching import DynamicBatcher, QueueFullError, ShuttingDownError
from .cost import ScoringBudget
from .endpoints import SPECS, Endpoint, finite
from .errors import ApiError, error_response
from .images import ImageError, decode_image
from .metrics import ServeMetrics
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware, RequestMetricsMiddleware
from .parsing import parse_request
from .runner import ModelBusyError, ModelRunner, Payload
from .schemas import ErrorBody, Health, ModelInfo, ModelList, TaskList, request_body_schema
from .settings import ServeSettings

log = logging.getLogger("ofa.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page loads nothing from elsewhere; the policy makes the browser enforce it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
DESCRIPTION = """OFA vision-language model over HTTP, with dynamic batching.

Each task endpoint takes `application/json` (the image as base64 in `image`) or
`multipart/form-data` (the image as a file part named `image`; list fields as repeated
parts). An option left out takes the task's default, or the server's where it sets one
(a VQA answer list). Errors are `{"detail": "..."}`. Images are never fetched from URLs.
`GET /v1/tasks` lists the task endpoints and their fields."""


def _error(description: str, headers: dict | None = None) -> dict:
    doc: dict[str, Any] = {"model": ErrorBody, "description": description}
    if headers:
        doc["headers"] = headers
    return doc


RETRY_AFTER = {"Retry-After": {"description": "seconds after which a retry is likely to "
                                              "succeed", "schema": {"type": "integer"}}}
TASK_ERRORS = {
    400: _error("the body could not be parsed (malformed JSON or multipart)"),
    408: _error("the request did not arrive whole within the server's read timeout; the "
                "connection is closed"),
    413: _error("the request body is larger than the server's limit"),
    415: _error("unsupported content type: use application/json or multipart/form-data"),
    422: _error("a field is missing or wrong, the image is corrupt, too large or not an "
                "image, or the candidates cost more than the server's scoring budget; "
                "`detail` says which"),
    503: _error("the task's queue is full, the server holds its most open connections, or "
                "it is shutting down", RETRY_AFTER),
    504: _error("no answer within the server's per-request timeout"),
}
AUTH_ERROR = {401: _error("missing or wrong API key", {
    "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}})}


def _is_protected(path: str) -> bool:
    # /v1/tasks describes the API as /openapi.json does, and the page needs it before a key
    # is typed
    return (path.startswith("/v1/") and path != "/v1/tasks") or path == "/metrics"


def create_app(ofa: Any, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``ofa`` (an :class:`ofa.OFA`, or anything with its methods)."""
    settings = settings or ServeSettings()
    name = str(getattr(ofa, "name", None) or "ofa")
    metrics = ServeMetrics()
    table = dict(SPECS)  # the task table as it is now
    # the answer list given to the server, else the one the checkpoint carries
    model_answers = getattr(ofa, "answers", None)
    defaults = settings.task_defaults or ({"vqa": {"answers": list(model_answers)}}
                                          if model_answers else {})
    batcher = DynamicBatcher(table, ModelRunner(ofa, defaults),
                             max_batch_size=settings.max_batch_size,
                             max_wait_s=settings.max_wait_s, queue_size=settings.queue_size,
                             on_batch=metrics.observe_batch)
    metrics.watch_queues(table, batcher.queue_depth, lambda: batcher.in_flight)
    budget = ScoringBudget(getattr(ofa, "tokenizer", None), settings.max_score_tokens,
                           defaults, getattr(ofa, "task", None))

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="OFA server", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # docs UIs need a CDN
    app.state.settings, app.state.batcher, app.state.metrics = settings, batcher, metrics
    _install_error_handlers(app)
    auth = AUTH_ERROR if settings.api_key else {}
    for spec in table.values():
        app.add_api_route(
            spec.path, _task_endpoint(spec, batcher, budget, settings, name), methods=["POST"],
            response_model=spec.result, summary=spec.summary, operation_id=spec.name,
            tags=["tasks"], responses={**TASK_ERRORS, **auth},
            openapi_extra={"requestBody": request_body_schema(spec.request, spec.image)})
    _add_service_routes(app, ofa, name, table, batcher, metrics, auth)

    # added innermost first: metrics see every refusal, auth runs before the body is read
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, protected=_is_protected)
        _document_auth(app)
    paths = {spec.path: spec.name for spec in table.values()}
    app.add_middleware(RequestMetricsMiddleware, observe=metrics.observe_request,
                       task_of=paths.get)
    return app


def _task_endpoint(spec: Endpoint, batcher: DynamicBatcher, budget: ScoringBudget,
                   settings: ServeSettings, name: str):
    async def endpoint(request: Request):
        arrived = time.perf_counter()
        parsed = await parse_request(request, spec.request, spec.image)
        req = parsed.request
        options = req.options()
        fields = req.inputs()
        if budget.applies(spec.name, options):  # before decoding: refusals should be cheap
            await run_in_threadpool(budget.check, spec.name, options, fields)
        if spec.task.kind == "draw" and options.get("samples", 0) > settings.max_samples:
            raise ApiError(422, f"samples: {options['samples']} is above the server's limit of "
                                f"{settings.max_samples} per request (--max-samples)")
        image = None
        if parsed.image is not None:
            try:
                image = await run_in_threadpool(decode_image, parsed.image, settings.max_pixels)
            except ImageError as e:
                raise ApiError(422, str(e)) from None
        if spec.image == "optional":  # with and without an image never share a batch
            options["with_image"] = image is not None
        payload = Payload(image, fields)
        time_left = settings.timeout_s - (time.perf_counter() - arrived)
        try:
            delivery = await asyncio.wait_for(batcher.submit(spec.name, options, payload),
                                              time_left)
        except TimeoutError:
            raise ApiError(504, f"no answer within the server's {settings.timeout_s:g} s "
                                "timeout; the server is overloaded, retry later") from None
        except QueueFullError as e:
            raise ApiError(503, str(e), {"Retry-After": str(e.retry_after)}) from None
        except ShuttingDownError as e:
            raise ApiError(503, str(e), {"Retry-After": "5"}) from None
        result = delivery.result
        if isinstance(result, ModelBusyError):
            raise ApiError(503, str(result), {"Retry-After": "5"})
        if isinstance(result, OFAError):
            raise ApiError(422, str(result))
        if isinstance(result, BaseException):
            raise result  # a bug: logged by the batcher, answered 500 by the handler
        return spec.result(
            model=name, latency_ms=round((time.perf_counter() - arrived) * 1000, 2),
            queue_ms=round(delivery.queue_s * 1000, 2), batch_size=delivery.batch_size,
            tokens=[int(t) for t in result.get("tokens", [])],
            score=finite(result.get("score", float("nan"))), **spec.body(result))

    endpoint.__name__ = f"{spec.name}_endpoint"
    return endpoint


def _add_service_routes(app: FastAPI, ofa: Any, name: str, table: dict[str, Endpoint],
                        batcher: DynamicBatcher, metrics: ServeMetrics, auth: dict) -> None:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness check")
    async def healthz() -> Health:
        return Health(status="ok", model=name, queue_depth=batcher.queue_depth())

    @app.get("/v1/models", response_model=ModelList, tags=["service"], responses=auth,
             summary="The model this server runs")
    async def models() -> ModelList:
        return ModelList(models=[ModelInfo(
            id=name, task=getattr(ofa, "task", None),
            device=str(getattr(ofa, "device", "cpu")),
            dtype=str(getattr(ofa, "dtype", "float32")).removeprefix("torch."),
            endpoints=[spec.path for spec in table.values()])])

    tasks = TaskList(tasks=[spec.info() for spec in table.values()])

    @app.get("/v1/tasks", response_model=TaskList, tags=["service"],
             summary="The task endpoints and the fields each takes")
    async def task_list() -> TaskList:
        return tasks

    metrics_doc = {200: {"description": "Prometheus text format (OpenMetrics on request)",
                         "content": {"text/plain": {"schema": {"type": "string"}},
                                     "application/openmetrics-text": {
                                         "schema": {"type": "string"}}}}, **auth}

    @app.get("/metrics", tags=["service"], responses=metrics_doc, response_class=Response,
             summary="Requests, latency, batch sizes and queue depth")
    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        detail = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}"
                           for e in exc.errors())
        return error_response(422, detail or "invalid request")

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception):
        log.error("internal error", exc_info=exc)
        return error_response(500, "internal server error")


def _document_auth(app: FastAPI) -> None:
    """Declare the API key in the OpenAPI document for the operations that need it."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
            for path, operations in schema["paths"].items():
                if _is_protected(path):
                    for op in operations.values():
                        op["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
        return app.openapi_schema

    app.openapi = openapi
