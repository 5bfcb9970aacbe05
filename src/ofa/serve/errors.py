"""The one exception type the HTTP layer raises on purpose: a status, a reason for the client
and optional headers (Retry-After, WWW-Authenticate). Handlers turn it into
``{"detail": reason}``, the shape every error of this API has."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.detail, self.headers)


def error_response(status: int, detail: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
