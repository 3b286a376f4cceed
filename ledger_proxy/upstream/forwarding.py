"""Pure rules for proxying: which headers cross, how URLs are checked and rewritten."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

# RFC 9110 §7.6.1 plus the legacy names werkzeug's http_proxy middleware also drops.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

# Set by the HTTP client from the URL and the body it sends.
REQUEST_HEADERS_SET_BY_CLIENT = frozenset({"host", "content-length"})
# Canvas builds its Link URLs from these (Rails honours them): sent on, they would make Canvas
# point pagination at a host or scheme that is neither Canvas's nor the client's. They are
# meant for the proxy (see LEDGER_PROXY_TRUSTED_PROXIES), never for Canvas.
FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-ssl",
        "x-url-scheme",
    }
)

INTEGRATION_HEADER = "X-Ledger-Integration"
REQUEST_ID_HEADER = "X-Ledger-Request-Id"

LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class BadRequestTarget(ValueError):
    """The request line names something the proxy will not forward."""


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return tokens


def end_to_end(
    headers: Iterable[tuple[str, str]], also_drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """The headers that cross the proxy: hop-by-hop ones and those named in Connection go."""
    pairs = list(headers)
    drop = HOP_BY_HOP | connection_tokens(pairs) | {name.lower() for name in also_drop}
    return [(name, value) for name, value in pairs if name.lower() not in drop]


def request_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers sent on to Canvas: end-to-end only, minus Host/Content-Length and our own."""
    return end_to_end(
        headers,
        also_drop=REQUEST_HEADERS_SET_BY_CLIENT | FORWARDING_HEADERS | {INTEGRATION_HEADER.lower()},
    )


def check_request_target(raw_target: str) -> tuple[str, str]:
    """Split the raw request target into (path, query), refusing what must not be forwarded.

    Absolute-URI and authority forms (a forward-proxy request) and dot segments, plain or
    percent-encoded, are refused: the proxy only ever talks to the configured Canvas.
    """
    if not raw_target.startswith("/") or raw_target.startswith("//"):
        raise BadRequestTarget(
            "only origin-form request targets (starting with one /) are accepted"
        )
    path, _, query = raw_target.partition("?")
    if "#" in path:
        raise BadRequestTarget("a request target cannot carry a fragment")
    for segment in path.split("/"):
        # Decoded twice: an upstream server may decode once more than we expect.
        decoded = unquote(unquote(segment))
        if any(part in (".", "..") for part in re.split(r"[/\\]", decoded)):
            raise BadRequestTarget("dot segments ('.' and '..') are not allowed in the path")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in raw_target):
        raise BadRequestTarget("the request target contains control characters or spaces")
    return path, query


_REPEATED_SLASHES = re.compile(r"/{2,}")


def squeeze_slashes(target: str) -> str:
    """The request target with runs of slashes in its path made one, as Rails' router does
    before routing (`//api/v1` and `/i/x//api/v1` are `/api/v1` and `/i/x/api/v1` to Canvas);
    the query string is left as it is."""
    path, mark, query = target.partition("?")
    return _REPEATED_SLASHES.sub("/", path) + mark + query


class SqueezeSlashes:
    """WSGI middleware applying squeeze_slashes to the path before routing and forwarding,
    so that a client whose base URL ends in a slash is served like one whose does not."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = _REPEATED_SLASHES.sub("/", path)
        for key in ("RAW_URI", "REQUEST_URI"):
            raw = environ.get(key)
            if raw and raw.startswith("/") and "//" in raw.partition("?")[0]:
                environ[key] = squeeze_slashes(raw)
        return self.app(environ, start_response)


def check_label(label: str) -> str:
    if not LABEL_PATTERN.fullmatch(label):
        raise BadRequestTarget(
            "an integration label is 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return label


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, lower-case host, port with the scheme's default filled in)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


_LINK_URL = re.compile(r"<([^>]*)>")


def canvas_part(url: str, canvas_base: str) -> str | None:
    """What follows Canvas's base in `url` (path from /api/... and query, byte for byte), or
    None when `url` is not Canvas's.

    Canvas's host is what counts, with the same port or a default one for either scheme:
    behind its load balancer Canvas may build http:// URLs for an https:// base.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    _, host, port = origin(url)
    _, canvas_host, canvas_port = origin(canvas_base)
    defaults = (80, 443)
    if host != canvas_host or not (
        port == canvas_port or (port in defaults and canvas_port in defaults)
    ):
        return None
    canvas_path = urlsplit(canvas_base).path.rstrip("/")
    if canvas_path and not (parts.path == canvas_path or parts.path.startswith(canvas_path + "/")):
        return None
    after_origin = url[len(f"{parts.scheme}://{parts.netloc}") :]
    return after_origin[len(canvas_path) :]


def rewrite_canvas_url(url: str, canvas_base: str, client_base: str) -> str:
    """`url` moved from Canvas's base to the client's, if it is under Canvas's base."""
    rest = canvas_part(url, canvas_base)
    return url if rest is None else client_base.rstrip("/") + rest


def rewrite_link_header(value: str, canvas_base: str, client_base: str) -> str:
    """Every URL in a Link header that points at Canvas, pointed at the client's base instead."""
    return _LINK_URL.sub(
        lambda match: f"<{rewrite_canvas_url(match.group(1), canvas_base, client_base)}>", value
    )


def response_headers(
    headers: Iterable[tuple[str, str]], canvas_base: str, client_base: str
) -> list[tuple[str, str]]:
    """Canvas's headers for the client: end-to-end only, Link and Location moved to the proxy."""
    result = []
    for name, value in end_to_end(headers):
        lower = name.lower()
        if lower == "link":
            value = rewrite_link_header(value, canvas_base, client_base)
        elif lower == "location":
            value = rewrite_canvas_url(value, canvas_base, client_base)
        result.append((name, value))
    return result
