"""The proxy's own errors, always in Canvas's error shape: {"errors": [{"message": ...}]}."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def error_body(message: str, error_code: str | None = None, **extra: Any) -> dict[str, Any]:
    """Canvas's error shape; `extra` keys (e.g. "status") sit beside "errors" as Canvas does."""
    error: dict[str, Any] = {"message": message}
    if error_code:
        error["error_code"] = error_code
    return {"errors": [error], **extra}


def error_response(
    http_status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    error_code: str | None = None,
    **extra: Any,
) -> Response:
    return Response(
        json.dumps(error_body(message, error_code, **extra)),
        status=http_status,
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


class ProxyError(Exception):
    """An error the proxy answers itself (never one of Canvas's, which pass through as is)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def response(self) -> Response:
        return error_response(self.status, self.message, **self.extra)


UNAUTHENTICATED_HEADERS = {"WWW-Authenticate": 'Bearer realm="canvas-lms"'}


def unauthenticated() -> Response:
    """Canvas's answer to a request without credentials."""
    return error_response(
        401,
        "user authorization required",
        headers=UNAUTHENTICATED_HEADERS,
        status="unauthenticated",
    )
