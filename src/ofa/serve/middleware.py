"""ASGI middleware that must see requests before any route does: the API key check, the
request-size limit and the per-task request metrics.

They are plain ASGI (not Starlette's BaseHTTPMiddleware) so they can refuse a request
before its body is read, and so the size limit holds for chunked uploads that declare no
Content-Length: the body is read up to the limit, and one byte more is a 413.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response


class ApiKeyMiddleware:
    """Requires the key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) on the API and
    metrics; the page, its assets, the health check and the OpenAPI document stay open so
    that load balancers and the page itself can reach them."""

    def __init__(self, app: ASGIApp, api_key: str,
                 protected: Callable[[str], bool]) -> None:
        self.app = app
        self.key = api_key.encode()
        self.protected = protected

    def _authorized(self, headers: Headers) -> bool:
        given = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.protected(scope["path"]):
            if not self._authorized(Headers(scope=scope)):
                response = error_response(
                    401, "missing or wrong API key: send 'Authorization: Bearer KEY' or "
                         "'X-API-Key: KEY'", {"WWW-Authenticate": 'Bearer realm="ofa"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Answers 413 for request bodies above ``max_bytes``; passes the rest on, buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        mb = self.max_bytes / (1024 * 1024)
        return error_response(413, f"request body is larger than the server's limit of "
                                   f"{mb:.3g} MB")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetricsMiddleware:
    """Counts task requests by status and times them, refusals (401, 413) included. A request
    that ends with no answer (its connection closed by the client, or cut by the server's
    read timeout) counts as 499, nginx's "client closed request", not as a server error."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, int, float], None],
                 task_of: Callable[[str], str | None]) -> None:
        self.app = app
        self.observe = observe
        self.task_of = task_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = self.task_of(scope["path"]) if scope["type"] == "http" else None
        if task is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 499

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if status == 499:  # escaped before any answer: uvicorn answers 500
                status = 500
            raise
        finally:
            self.observe(task, status, time.perf_counter() - start)
