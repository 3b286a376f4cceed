"""The proxy's own errors, always in Canvas's error shape: {"errors": [{"message": ...}]}."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where a response is built: the core raises ProxyError too
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
    from werkzeug.wrappers import Response

    return Response(
        json.dumps(error_body(message, error_code, **extra)),
        status=http_status,
        content_type=JSON_CONTENT_TYPE,
        headers=headers,
    )


class ProxyError(Exception):
    """An error the proxy answers itself (never one of Canvas's, which pass through as is)."""

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.headers = headers
        self.error_code = error_code
        self.extra = extra

    def response(self) -> Response:
        return error_response(
            self.http_status,
            self.message,
            headers=self.headers,
            error_code=self.error_code,
            **self.extra,
        )


UNAUTHENTICATED_HEADERS = {"WWW-Authenticate": 'Bearer realm="canvas-lms"'}


def unauthenticated() -> ProxyError:
    """Canvas's answer to a request without credentials."""
    return ProxyError(
        401,
        "user authorization required",
        headers=UNAUTHENTICATED_HEADERS,
        status="unauthenticated",
    )


def invalid_token() -> ProxyError:
    """Canvas's answer to a token it does not know."""
    return ProxyError(401, "Invalid access token.", headers=UNAUTHENTICATED_HEADERS)


def forbidden() -> ProxyError:
    """Canvas's answer to an authenticated caller without the right."""
    return ProxyError(403, "user not authorized to perform that action", status="unauthorized")
