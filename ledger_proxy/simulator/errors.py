"""Canvas-shaped API errors, raised by the simulator's pure modules and rendered by its views."""

from __future__ import annotations

from typing import Any

NOT_FOUND_MESSAGE = "The specified resource does not exist."
UNAUTHORIZED_MESSAGE = "user not authorized to perform that action"
WWW_AUTHENTICATE = 'Bearer realm="canvas-lms"'


class ApiError(Exception):
    """An HTTP error answer: status, JSON body and extra headers, exactly as Canvas sends it."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body!r}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, {"errors": [{"message": NOT_FOUND_MESSAGE}]})


def forbidden() -> ApiError:
    return ApiError(403, {"status": "unauthorized", "errors": [{"message": UNAUTHORIZED_MESSAGE}]})


def unauthenticated() -> ApiError:
    body = {"status": "unauthenticated", "errors": [{"message": "user authorization required"}]}
    return ApiError(401, body, {"WWW-Authenticate": WWW_AUTHENTICATE})


def invalid_token() -> ApiError:
    body = {"errors": [{"message": "Invalid access token."}]}
    return ApiError(401, body, {"WWW-Authenticate": WWW_AUTHENTICATE})


def bad_message(*messages: str) -> ApiError:
    """`render_create_errors`: 400 `{"message": "a, b"}`."""
    return ApiError(400, {"message": ", ".join(messages)})


def bad_error(message: str) -> ApiError:
    """accept/reject/reactivate and listing-state errors: 400 `{"error": "..."}`."""
    return ApiError(400, {"error": message})


def bad_errors_string(message: str) -> ApiError:
    """bulk_enrollment errors: 400 `{"errors": "..."}` (a string, not an array)."""
    return ApiError(400, {"errors": message})


def invalid_record(attribute: str, message: str, error_type: str | None = None) -> ApiError:
    """A model validation failure in the ActiveModel errors-object shape."""
    entry = {"attribute": attribute, "type": error_type or message, "message": message}
    return ApiError(400, {"errors": {attribute: [entry]}})


def generic_bad_request() -> ApiError:
    body = {"errors": [{"message": "An error occurred.", "error_code": "bad_request"}]}
    return ApiError(400, body)


def internal_error_body(error_report_id: int) -> dict[str, Any]:
    return {
        "errors": [{"message": "An error occurred.", "error_code": "internal_server_error"}],
        "error_report_id": error_report_id,
    }
