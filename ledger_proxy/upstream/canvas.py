"""The upstream Canvas client: one pooled session per worker, explicit timeouts, no retries."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import SKIP_HEADER, Timeout
from urllib3.util.retry import Retry

from .. import __version__
from ..core.ledger import Actor
from ..errors import ProxyError
from .forwarding import canvas_part

log = logging.getLogger(__name__)

USER_AGENT = f"ledger-proxy/{__version__}"
# The cheapest authenticated request: who the token is, and Canvas's clock in its Date header.
SELF = "/api/v1/users/self"


class CanvasUnreachable(Exception):
    """No connection to Canvas could be made: the request was never sent (502)."""


class CanvasTimeout(Exception):
    """Canvas took longer than the read timeout to answer: it may have acted (504)."""


class CanvasConnectionLost(Exception):
    """The connection broke after the request was sent: Canvas may have acted (502)."""


class CanvasAnswerCut(Exception):
    """Canvas's answer stopped before its end, after it began to answer: it may have acted
    (504 when it stalled past the read timeout, 502 when the connection broke)."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class CanvasRefused(Exception):
    """Canvas answered, but not with success: its answer is passed on to the caller as is."""

    def __init__(self, status: int, headers: list[tuple[str, str]], content: bytes) -> None:
        super().__init__(f"Canvas answered {status}")
        self.status = status
        self.headers = headers
        self.content = content

    def message(self, limit: int = 500) -> str:
        """The human part of Canvas's error body (its JSON errors, a message, or plain text)."""
        text = self.content.decode("utf-8", errors="replace").strip()
        try:
            body = json.loads(text)
        except ValueError:
            return text[:limit] or "no explanation given"
        if isinstance(body, dict):
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                return str(errors[0].get("message", ""))[:limit]
            if isinstance(body.get("message"), str):
                return str(body["message"])[:limit]
        return text[:limit]


def proxy_error(exc: Exception) -> ProxyError:
    """The proxy's own answer when Canvas gave none (502/504 in Canvas's error shape)."""
    if isinstance(exc, CanvasTimeout):
        return ProxyError(504, "Canvas did not answer in time; it may still have acted")
    if isinstance(exc, CanvasUnreachable):
        return ProxyError(502, "Canvas could not be reached; the request was not sent")
    if isinstance(exc, CanvasAnswerCut) and exc.timed_out:
        return ProxyError(504, "Canvas did not finish answering in time; it may have acted")
    if isinstance(exc, CanvasAnswerCut):
        return ProxyError(
            502, "the connection to Canvas broke while it answered; it may have acted"
        )
    return ProxyError(502, "the connection to Canvas broke before it answered; it may have acted")


CANVAS_FAILURES = (CanvasUnreachable, CanvasTimeout, CanvasConnectionLost)


def read_answer(response: requests.Response | Forwarded) -> bytes:
    """The whole body of a streamed answer, undecoded, as Canvas sent it; CanvasAnswerCut
    when Canvas stalls or the connection breaks while it answers."""
    try:
        return response.raw.read(decode_content=False)  # type: ignore[no-any-return]
    except Exception as exc:  # urllib3's ReadTimeoutError, ProtocolError, OSError, ...
        timed_out = isinstance(exc, (ReadTimeoutError, TimeoutError))
        raise CanvasAnswerCut(type(exc).__name__, timed_out=timed_out) from None


def _never_sent(exc: requests.ConnectionError) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, NameResolutionError))


def describe(exc: BaseException) -> str:
    """A short, token-free description of a transport failure (no URL, no headers)."""
    reason = exc.args[0] if exc.args else exc
    reason = getattr(reason, "reason", reason)
    return type(reason).__name__


# urllib3 re-encodes every request target it is given (`state[]` -> `state%5B%5D`, `%7e` ->
# `%7E`, a bare `%` -> `%25`), so Canvas would see other bytes than the client sent, and may
# answer otherwise. The target of the request being sent from this thread is kept here and
# written on the request line as it is; it has already passed check_request_target (origin
# form, no spaces or control characters).
_raw_target = threading.local()


class _RawTargetMixin:
    def putrequest(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        raw = getattr(_raw_target, "value", None)
        if raw is not None and raw.isascii():
            url = raw
        super().putrequest(method, url, *args, **kwargs)  # type: ignore[misc]


class _RawHTTPConnection(_RawTargetMixin, HTTPConnection):
    pass


class _RawHTTPSConnection(_RawTargetMixin, HTTPSConnection):
    pass


class _RawHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _RawHTTPConnection


class _RawHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _RawHTTPSConnection


class _RawTargetAdapter(HTTPAdapter):
    """requests' adapter with connection pools that send the request target unchanged."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _RawHTTPConnectionPool,
            "https": _RawHTTPSConnectionPool,
        }


@dataclass
class CanvasClient:
    base_url: str
    connect_timeout: float
    read_timeout: float
    pool_size: int = 32

    @classmethod
    def configured(cls, settings: Mapping[str, Any]) -> CanvasClient:
        """The client for LEDGER_PROXY_CANVAS_URL and its timeouts."""
        return cls(settings["CANVAS_URL"], settings["CONNECT_TIMEOUT"], settings["READ_TIMEOUT"])

    def __post_init__(self) -> None:
        self.session = requests.Session()
        # Never route Canvas traffic through an environment proxy (HTTP_PROXY & co).
        self.session.trust_env = False
        # Send the caller's headers only: none of requests' defaults (User-Agent,
        # Accept-Encoding, Accept, Connection) may be added to forwarded requests.
        self.session.headers.clear()
        # Retry only failures to connect, which happen before anything is sent; a request
        # that reached Canvas is never sent twice.
        self._retry = Retry(
            total=2, connect=2, read=False, status=0, other=0, redirect=0, backoff_factor=0.1
        )
        adapter = _RawTargetAdapter(
            pool_connections=4, pool_maxsize=self.pool_size, max_retries=self._retry
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._pool = _pool_for(self.base_url, self.pool_size)

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def send(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | BinaryIO | Iterable[bytes] | None,
    ) -> requests.Response:
        """Send `method target` (raw path and query, from /api/ on) to Canvas as is.

        The response is streamed: the caller reads `response.raw` undecoded and closes it.
        """
        merged = _as_sent(headers)
        request = requests.Request(method, self.base_url + "/", headers=merged, data=body)
        prepared = self.session.prepare_request(request)
        # requests and urllib3 would re-quote the URL; Canvas must see the caller's bytes.
        prepared.url = self.base_url + target
        _raw_target.value = self._base_path + target
        try:
            return self.session.send(
                prepared, stream=True, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout as exc:
            if isinstance(exc, requests.ConnectTimeout):
                raise CanvasUnreachable(describe(exc)) from None
            raise CanvasTimeout(describe(exc)) from None
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise CanvasUnreachable(describe(exc)) from None
            raise CanvasConnectionLost(describe(exc)) from None
        finally:
            _raw_target.value = None

    def forward(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None = None,
    ) -> BaseHTTPResponse:
        """`send` of a request with no body or one held in memory, on the urllib3 pool
        directly (issue 12: requests' session layer cost about a tenth of a GET's Python
        time, a quarter of an enrollment POST's).

        The same request on the wire as `send` (headers merged the same way, no defaults
        added, the raw target, the same connect retries and timeouts) and the same failures.
        The answer is streamed: read it undecoded, then `release(answer)`.
        """
        merged = _as_sent(headers)
        # Content-Length as requests sets it (prepare_body, prepare_content_length).
        if body:
            merged["Content-Length"] = str(len(body))
        else:
            body = None
            if method not in ("GET", "HEAD"):
                merged["Content-Length"] = "0"
        url = self._base_path + target
        _raw_target.value = url
        try:
            return self._pool.urlopen(
                method,
                url,
                body=body,
                headers=merged,
                retries=self._retry,
                redirect=False,
                assert_same_host=False,
                timeout=Timeout(connect=self.connect_timeout, read=self.read_timeout),
                preload_content=False,
                decode_content=False,
            )
        except MaxRetryError as exc:  # connecting failed every time: nothing was sent
            if isinstance(exc.reason, (ConnectTimeoutError, NewConnectionError)):
                raise CanvasUnreachable(type(exc.reason).__name__) from None
            raise CanvasConnectionLost(type(exc.reason).__name__) from None
        except ReadTimeoutError:
            raise CanvasTimeout("ReadTimeoutError") from None
        except (HTTPError, OSError) as exc:  # ProtocolError & co.: after it was sent
            raise CanvasConnectionLost(type(exc).__name__) from None
        finally:
            _raw_target.value = None

    @property
    def _base_path(self) -> str:
        return urlsplit(self.base_url).path.rstrip("/")

    def pages(self, target: str, token: str) -> Iterator[list[Any]]:
        """Each page of the JSON list at `target`, following Canvas's Link rel="next".

        Raises CanvasRefused with Canvas's own answer when it says no (401, 403, 404,
        throttling...), and CanvasUnreachable & co. when it gives no answer.
        """
        next_target: str | None = target
        while next_target:
            page, next_url = self._get(next_target, token)
            if not isinstance(page, list):
                raise CanvasConnectionLost("a page that is not a JSON list")
            yield page
            next_target = self._next_target(next_url)

    def get_json(self, target: str, token: str) -> Any:
        """The JSON document at `target` (its first page only); errors as pages() raises."""
        return self._get(target, token)[0]

    def course(self, course_ref: str, token: str) -> dict[str, Any]:
        """Canvas's Course JSON (GET /api/v1/courses/:id, an id or sis_course_id:...), as the
        token's user may see it; errors as pages() raises."""
        document = self.get_json(f"/api/v1/courses/{quote(course_ref, safe=':')}", token)
        if not isinstance(document, dict):
            raise CanvasConnectionLost("a course that is not a JSON object")
        return document

    def _get(self, target: str, token: str) -> tuple[Any, str | None]:
        """(JSON document, URL of its next page) of an authenticated GET."""
        response = self._get_as(token, target)
        with contextlib.closing(response):
            try:
                content = response.content
            except requests.RequestException as exc:
                raise CanvasConnectionLost(describe(exc)) from None
            if response.status_code != 200:
                raise CanvasRefused(response.status_code, list(response.headers.items()), content)
            try:
                document = response.json()
            except ValueError:
                raise CanvasConnectionLost("an answer that is not JSON") from None
            return document, response.links.get("next", {}).get("url")

    def _get_as(self, token: str, target: str) -> requests.Response:
        """An authenticated GET of the proxy's own (not a caller's forwarded request)."""
        headers = [("Authorization", f"Bearer {token}"), ("User-Agent", USER_AGENT)]
        return self.send("GET", target, headers, None)

    def _next_target(self, next_url: str | None) -> str | None:
        """The next page's target from /api/ on; a link off Canvas is never followed (it would
        carry the caller's token elsewhere)."""
        if not next_url:
            return None
        rest = canvas_part(next_url, self.base_url)
        if rest is None or not rest.startswith("/api/"):
            raise CanvasConnectionLost("a pagination link outside Canvas's base URL")
        return rest

    def server_time(self, token: str) -> datetime | None:
        """Canvas's clock, from the Date header of a cheap authenticated request."""
        response = self._get_as(token, SELF)
        response.close()
        dates = response.raw.headers.getlist("Date")
        return http_date(dates[-1]) if dates else None

    def whoami(self, token: str) -> Actor | None:
        """The Canvas user behind `token` (GET /api/v1/users/self), or None if Canvas says no.

        Raises CanvasUnreachable, CanvasTimeout or CanvasConnectionLost when Canvas gives no
        answer, so that "this token is invalid" and "Canvas is down" stay apart.
        """
        response = self._get_as(token, SELF)
        with contextlib.closing(response):
            if response.status_code != 200:
                return None
            try:
                user = response.json()  # reads the streamed body
            except requests.RequestException as exc:
                raise CanvasConnectionLost(describe(exc)) from None
            except ValueError:
                return None
        try:
            return Actor(int(user["id"]), user.get("name"))
        except (KeyError, TypeError, ValueError):
            return None


class Forwarded:
    """An answer from `forward` with what the recording reads of requests' Response."""

    def __init__(self, raw: BaseHTTPResponse) -> None:
        self.raw = raw
        self.status_code = raw.status

    def close(self) -> None:
        release(self.raw)


def release(answer: BaseHTTPResponse) -> None:
    """Done with a forwarded answer: as requests' Response.close(), the connection goes back
    to the pool when its body was read to the end, and is closed when it was not."""
    answer.close()
    answer.release_conn()


def _pool_for(base_url: str, size: int) -> HTTPConnectionPool:
    """The urllib3 pool `forward` uses, with the raw-target connections and requests' TLS
    verification (its CA bundle; no environment proxies)."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return _RawHTTPSConnectionPool(
            parts.hostname or "",
            parts.port or 443,
            maxsize=size,
            block=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=requests.utils.DEFAULT_CA_BUNDLE_PATH,
        )
    return _RawHTTPConnectionPool(
        parts.hostname or "", parts.port or 80, maxsize=size, block=False
    )


def enrollments_target(
    scope: str, ref: str, states: Iterable[str], *, user_ref: str | None = None, per_page: int = 100
) -> str:
    """The listing of a course's or section's enrollments in these states (each asked for:
    Canvas's default leaves some out), of one user when `user_ref` is given."""
    query = "&".join(f"state%5B%5D={state}" for state in states)
    user = f"&user_id={quote(user_ref, safe=':')}" if user_ref else ""
    return f"/api/v1/{scope}/{quote(ref, safe=':')}/enrollments?{query}{user}&per_page={per_page}"


def _as_sent(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers for urllib3, exactly the client's (`send` and `forward` alike)."""
    merged = dict(_merge(headers))
    # urllib3 would add its own User-Agent, and "Accept-Encoding: identity", to a request
    # that has none: Canvas must see what the client sent.
    for name in ("User-Agent", "Accept-Encoding"):
        if not any(given.lower() == name.lower() for given in merged):
            merged[name] = SKIP_HEADER
    return merged


def _merge(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """requests takes a mapping; repeated headers are joined as HTTP allows (RFC 9110 §5.3)."""
    merged: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        key = name.lower()
        if key in merged:
            merged[key] = (merged[key][0], f"{merged[key][1]}, {value}")
        else:
            merged[key] = (name, value)
    return list(merged.values())


def http_date(value: str) -> datetime | None:
    """An HTTP Date header as an aware UTC datetime ("GMT" and "-0000" both mean UTC)."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme word exactly)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme == "Bearer" and token else None


def request_token(authorization: str | None, params: Mapping[str, Any]) -> str | None:
    """The token Canvas would use: the Bearer header, else an access_token parameter."""
    token = bearer_token(authorization)
    if token:
        return token
    value = params.get("access_token")
    return value if isinstance(value, str) and value else None


def token_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()
