"""Canvas's account reports API (provenance-sources.md §3.1): start a `provisioning_csv` run of
enrollments, poll it with back-off until it ends, and stream its attachment's lines."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import requests

from .canvas import (
    USER_AGENT,
    CanvasClient,
    CanvasConnectionLost,
    CanvasRefused,
    CanvasTimeout,
    CanvasUnreachable,
    describe,
    read_answer,
)
from .forwarding import canvas_part

REPORT = "provisioning_csv"
ENDED = ("complete", "error", "aborted", "deleted")
FIRST_WAIT, MAX_WAIT = 0.2, 10.0  # seconds between polls: doubling from the first to the most


class ReportFailed(Exception):
    """The report ended without a file (error, aborted, deleted), or did not end in time."""


@dataclass(frozen=True)
class Run:
    account_id: str
    report_id: int


def _path(account_id: str, *rest: str) -> str:
    tail = "".join(f"/{part}" for part in rest)
    return f"/api/v1/accounts/{quote(account_id, safe=':')}/reports/{REPORT}{tail}"


def _json(canvas: CanvasClient, method: str, target: str, token: str, body: bytes | None) -> Any:
    headers = [("Authorization", f"Bearer {token}"), ("User-Agent", USER_AGENT)]
    if body is not None:
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    response = canvas.send(method, target, headers, body)
    with contextlib.closing(response):
        content = read_answer(response)
    if response.status_code != 200:
        raise CanvasRefused(response.status_code, list(response.headers.items()), content)
    try:
        document = json.loads(content)
    except ValueError:
        raise CanvasConnectionLost("an answer that is not JSON") from None
    if not isinstance(document, dict) or "id" not in document:
        raise CanvasConnectionLost("an answer that is not a report")
    return document


def start(
    canvas: CanvasClient, token: str, account_id: str, *, term: str | None = None
) -> dict[str, Any]:
    """Start an enrollments-only run (with completed and SIS-touched deleted rows)."""
    parameters = {"parameters[enrollments]": "true", "parameters[include_deleted]": "true"}
    if term:
        parameters["parameters[enrollment_term_id]"] = term
    body = urlencode(parameters).encode()
    document: dict[str, Any] = _json(canvas, "POST", _path(account_id), token, body)
    return document


def status(canvas: CanvasClient, token: str, run: Run) -> dict[str, Any]:
    document: dict[str, Any] = _json(
        canvas, "GET", _path(run.account_id, str(run.report_id)), token, None
    )
    return document


def wait(
    canvas: CanvasClient,
    token: str,
    run: Run,
    *,
    timeout: float,
    on_status: Callable[[dict[str, Any]], None] = lambda report: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the run is complete (its report, with the attachment); ReportFailed when it
    ends otherwise or is still running after `timeout` seconds."""
    deadline = clock() + timeout
    pause = FIRST_WAIT
    while True:
        report = status(canvas, token, run)
        on_status(report)
        state = report.get("status")
        if state == "complete":
            return report
        if state in ENDED:
            said = (report.get("parameters") or {}).get("extra_text")
            raise ReportFailed(
                f"Canvas's {REPORT} report {run.report_id} ended with status {state!r}"
                + (f": {said}" if said else "")
            )
        if clock() + pause > deadline:
            raise ReportFailed(
                f"Canvas's {REPORT} report {run.report_id} did not complete within "
                f"{timeout:g} s (status {state!r}, progress {report.get('progress')}%)"
            )
        sleep(pause)
        pause = min(MAX_WAIT, pause * 2)


def download_url(report: dict[str, Any]) -> str:
    url = (report.get("attachment") or {}).get("url") or report.get("file_url")
    if not url:
        raise ReportFailed(f"Canvas's report {report.get('id')} is complete but has no file")
    return str(url)


@contextlib.contextmanager
def lines(canvas: CanvasClient, token: str, url: str) -> Iterator[io.TextIOWrapper]:
    """The attachment's text, streamed (constant memory). On Canvas's own host the token goes
    with it; elsewhere (a files domain, a storage redirect) the URL's verifier is the key and
    the token is never sent."""
    target = canvas_part(url, canvas.base_url)
    try:
        if target is not None:
            headers = [("Authorization", f"Bearer {token}"), ("User-Agent", USER_AGENT)]
            response = canvas.send("GET", target, headers, None)
            while response.is_redirect and response.headers.get("Location"):
                response.close()
                response = _get_elsewhere(canvas, response.headers["Location"])
        else:
            response = _get_elsewhere(canvas, url)
    except requests.Timeout as exc:
        raise CanvasTimeout(describe(exc)) from None
    except requests.ConnectionError as exc:
        raise CanvasUnreachable(describe(exc)) from None
    with contextlib.closing(response):
        if response.status_code != 200:
            raise CanvasRefused(response.status_code, list(response.headers.items()), b"")
        response.raw.decode_content = True
        yield io.TextIOWrapper(response.raw, encoding="utf-8-sig", newline="")


def _get_elsewhere(canvas: CanvasClient, url: str) -> requests.Response:
    session = requests.Session()  # not closed here: the streamed body still needs its pool
    session.trust_env = False
    return session.get(url, stream=True, timeout=canvas.timeout, headers={"User-Agent": USER_AGENT})
