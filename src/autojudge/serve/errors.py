"""Errors as the OpenAI API sends them: a status and {"error": {message, type, param, code}}."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def decoding_failed(exc: Exception) -> APIError:
    return APIError(500, f"decoding failed: {type(exc).__name__}: {exc}", kind="server_error")


def install_error_handlers(app: FastAPI, count_error: Callable[[], None]) -> None:
    """Answer APIErrors and invalid bodies in OpenAI's shape, each counted by `count_error`."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError):
        count_error()
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        count_error()
        return JSONResponse(validation_error(exc).body(), status_code=400)


def validation_error(exc: RequestValidationError) -> APIError:
    """The first thing pydantic found wrong, as a 400 naming its field."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    if first.get("type") == "json_invalid":
        return APIError(400, "the body is not valid JSON")
    return APIError(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", param=where)
