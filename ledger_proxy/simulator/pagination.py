"""Canvas bookmark pagination (§8): per_page, `page=first|bookmark:...`, and the `Link` header."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote_plus

from ledger_proxy.simulator import errors
from ledger_proxy.simulator.params import ruby_to_i

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
EXCLUDED_LINK_PARAMS = frozenset({"page", "per_page", "access_token", "api_key"})

Row = TypeVar("Row")


@dataclass
class Page:
    """One page of a bookmarked collection and what the `Link` header needs."""

    rows: list[Any]
    per_page: int
    current_token: str
    next_token: str | None


def per_page(query_pairs: Sequence[tuple[str, str]]) -> int:
    """Last `per_page` wins; absent -> 10; clamped to 1..100 (garbage and 0 give 1)."""
    values = [value for key, value in query_pairs if key == "per_page"]
    if not values:
        return DEFAULT_PER_PAGE
    return min(max(ruby_to_i(values[-1]), 1), MAX_PER_PAGE)


def encode_bookmark(sort_key: Sequence[Any]) -> str:
    """`bookmark:` + URL-safe base64 of the JSON sort key, padding stripped."""
    raw = json.dumps(list(sort_key), separators=(",", ":"), ensure_ascii=False)
    token = base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")
    return f"bookmark:{token}"


def decode_bookmark(token: str) -> list[Any]:
    body = token[len("bookmark:") :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise errors.not_found() from exc
    if not isinstance(value, list):
        raise errors.not_found()
    return value


def page_bookmark(query_pairs: Sequence[tuple[str, str]]) -> list[Any] | None:
    """None for the first page; the decoded key for `bookmark:`; 404 for anything else (§8)."""
    values = [value for key, value in query_pairs if key == "page"]
    page = values[-1] if values else "first"
    if page in ("", "first", "1"):
        return None
    if page.startswith("bookmark:"):
        return decode_bookmark(page)
    raise errors.not_found()


def paginate(
    rows: Sequence[Row],
    bookmark_of: Callable[[Row], list[Any]],
    order: Callable[[Sequence[Any]], Any],
    query_pairs: Sequence[tuple[str, str]],
) -> Page:
    """Rows after the requested bookmark, `per_page` of them; `rows` must be sorted by `order`."""
    size = per_page(query_pairs)
    after = page_bookmark(query_pairs)
    if after is None:
        remaining = list(rows)
        current = "first"
    else:
        try:
            threshold = order(after)
            remaining = [row for row in rows if order(bookmark_of(row)) > threshold]
        except (TypeError, IndexError, AttributeError) as exc:
            raise errors.not_found() from exc
        current = encode_bookmark(after)
    shown = remaining[:size]
    has_more = len(remaining) > size
    next_token = encode_bookmark(bookmark_of(shown[-1])) if has_more and shown else None
    return Page(rows=shown, per_page=size, current_token=current, next_token=next_token)


def carried_query(query_string: str) -> str:
    """Rails `query_parameters.except(page, per_page, access_token, api_key).to_query`."""
    scalars: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        if key in EXCLUDED_LINK_PARAMS:
            continue
        if key.endswith("[]"):
            arrays.setdefault(key, []).append(value)
        else:
            scalars[key] = value
    parts = [f"{_escape(k)}={_escape(v)}" for k, v in scalars.items()]
    parts += ["&".join(f"{_escape(k)}={_escape(v)}" for v in vs) for k, vs in arrays.items()]
    return "&".join(sorted(parts))


def link_header(endpoint_url: str, query_string: str, page: Page) -> str:
    """`<URL>; rel="current",<URL>; rel="next",<URL>; rel="first"` (no `next` on the last page)."""
    carried = carried_query(query_string)
    prefix = f"{endpoint_url}?{carried}&" if carried else f"{endpoint_url}?"

    def url(token: str) -> str:
        return f"{prefix}page={token}&per_page={page.per_page}"

    links = [f'<{url(page.current_token)}>; rel="current"']
    if page.next_token:
        links.append(f'<{url(page.next_token)}>; rel="next"')
    links.append(f'<{url("first")}>; rel="first"')
    return ",".join(links)


def _escape(text: str) -> str:
    """Ruby `CGI.escape`: everything but `a-zA-Z0-9_.-~` percent-encoded, space as `+`."""
    return quote_plus(text, safe="~")
