"""Who made an enrollment, read from Canvas page views: candidates, windows and matches (pure).

A page view's `id` is the request id (provenance-sources §7), its `url` and `http_method` say
what was asked, its `user_agent` and `app_name` how (§4). The rules, strongest first:

1. A matching page view whose id is a request id the proxy or a Live Event recorded:
   `confirmed`, that candidate. A page view known to have made another enrollment is no
   match at all (the integration's own POST a second earlier).
2. Exactly one candidate has a matching page view in the window: `probable`, that candidate.
3. Several candidates match: `ambiguous`; all of them are listed, none is named.
4. Nobody matches: no actor.

A match is a POST (or a view without a method) whose URL is an enrollment-creating route of
this course or one of its sections, within `allowance` of the enrollment's `created_at`
(whole seconds on both sides); each candidate's closest such view counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from .util import parse_time

SOURCE = "page_views"
CONFIRMED, PROBABLE, AMBIGUOUS = "confirmed", "probable", "ambiguous"
CONFIDENCES = (CONFIRMED, PROBABLE, AMBIGUOUS)
VIA_UI, VIA_API, VIA_SELF = "ui", "api", "self"
# What people report hosted Canvas shows for a teacher's Add People action (§4).
UI_USER_AGENT = "User-Generated"
_BROWSER = re.compile(r"^Mozilla/\d")
_CREATE_ROUTES = (
    re.compile(r"^/api/v1/courses/(?P<course>[^/]+)/enrollments/?$"),
    re.compile(r"^/api/v1/sections/(?P<section>[^/]+)/enrollments/?$"),
    re.compile(r"^/courses/(?P<course>[^/]+)/enroll_users/?$"),
)
# Candidates' roles, as the reason names them.
TEACHING_TYPES = frozenset({"TeacherEnrollment", "TaEnrollment", "DesignerEnrollment"})


@dataclass(frozen=True)
class Target:
    """One enrollment to attribute."""

    enrollment_id: int
    user_id: int | None
    course_id: int
    section_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class Window:
    """One page-views query: [start, end) in whole seconds, and the enrollments it covers."""

    start: datetime
    end: datetime
    enrollment_ids: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class Match:
    user_id: int
    view_id: str | None
    at: datetime
    via: str
    user_agent: str | None
    app_name: str | None
    url: str | None
    real_user_id: int | None


@dataclass(frozen=True)
class Attribution:
    """The verdict for one enrollment: the actor JSON (or None) and its evidence."""

    enrollment_id: int
    actor: dict[str, Any] | None
    evidence: tuple[Match, ...]


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def candidates(
    roster: Iterable[Mapping[str, Any]], admins: Iterable[int], integration_users: Iterable[int],
) -> list[int]:
    """The course's teachers, TAs and designers in any state, the admins, the integrations'
    users; each enrolled user is a candidate for their own row only (see `for_target`)."""
    found: list[int] = []
    for row in roster:
        user_id = row.get("user_id")
        if row.get("type") in TEACHING_TYPES and isinstance(user_id, int):
            found.append(user_id)
    found.extend(admins)
    found.extend(integration_users)
    return sorted(set(found))


def for_target(shared: Sequence[int], target: Target) -> list[int]:
    extra = [target.user_id] if target.user_id is not None else []
    return sorted(set(shared) | set(extra))


def windows(
    targets: Iterable[Target], allowance: timedelta, merge_gap: timedelta = timedelta(hours=1),
) -> list[Window]:
    """As few queries as cover every target: each target's [created_at - allowance,
    created_at + allowance + 1s), windows closer than `merge_gap` joined into one."""
    spans = sorted(
        (whole_second(t.created_at) - allowance,
         whole_second(t.created_at) + allowance + timedelta(seconds=1), t.enrollment_id)
        for t in targets
    )
    merged: list[Window] = []
    for start, end, enrollment_id in spans:
        if merged and start - merged[-1].end <= merge_gap:
            last = merged[-1]
            merged[-1] = Window(
                last.start, max(last.end, end), (*last.enrollment_ids, enrollment_id)
            )
        else:
            merged.append(Window(start, end, (enrollment_id,)))
    return merged


def creates_enrollment_in(
    view: Mapping[str, Any], course_id: int, section_ids: Iterable[int]
) -> bool:
    """A POST (or no method) to an enrollment-creating route of the course or its sections."""
    method = view.get("http_method")
    if method and str(method).upper() != "POST":
        return False
    path = urlsplit(str(view.get("url") or "")).path
    sections = {str(s) for s in section_ids}
    for route in _CREATE_ROUTES:
        found = route.match(path)
        if not found:
            continue
        groups = found.groupdict()
        if "course" in groups and groups["course"] == str(course_id):
            return True
        if "section" in groups and groups["section"] in sections:
            return True
    return False


def via_of(view: Mapping[str, Any], user_id: int, target: Target) -> str:
    """`self` for the enrolled user; `ui` for "User-Generated" or a browser; else `api` (§4:
    the user agent first, `app_name` "User-Generated" is only the personal-token key)."""
    if user_id == target.user_id:
        return VIA_SELF
    agent = str(view.get("user_agent") or "")
    if agent == UI_USER_AGENT or _BROWSER.match(agent):
        return VIA_UI
    return VIA_API


def match(
    target: Target,
    views_by_user: Mapping[int, Sequence[Mapping[str, Any]]],
    users: Sequence[int],
    section_ids: Iterable[int],
    known_request_ids: Mapping[str, int | None],
    allowance: timedelta,
) -> Attribution:
    """The attribution of one enrollment from its candidates' page views (the rules above)."""
    sections = list(section_ids)
    created = whole_second(target.created_at)
    best: dict[int, Match] = {}
    for user_id in users:
        for view in views_by_user.get(user_id, ()):
            at = parse_time(view.get("created_at"))
            if at is None or abs(whole_second(at) - created) > allowance:
                continue
            if not creates_enrollment_in(view, target.course_id, sections):
                continue
            view_id = _text(view.get("id"))
            made = known_request_ids.get(view_id) if view_id else None
            if made is not None and made != target.enrollment_id:
                continue  # a request known to have made another enrollment
            found = Match(
                user_id=user_id, view_id=view_id, at=whole_second(at),
                via=via_of(view, user_id, target), user_agent=_text(view.get("user_agent")),
                app_name=_text(view.get("app_name")), url=_text(view.get("url")),
                real_user_id=_link(view, "real_user"),
            )
            kept = best.get(user_id)
            if kept is None or abs(found.at - created) < abs(kept.at - created):
                best[user_id] = found
    evidence = tuple(sorted(best.values(), key=lambda m: (abs(m.at - created), m.user_id)))
    confirmed = [m for m in evidence if m.view_id is not None and m.view_id in known_request_ids]
    if confirmed and len({m.user_id for m in confirmed}) == 1:
        return Attribution(target.enrollment_id, _actor(confirmed[0], CONFIRMED), evidence)
    if len(evidence) == 1:
        return Attribution(target.enrollment_id, _actor(evidence[0], PROBABLE), evidence)
    if evidence:
        return Attribution(target.enrollment_id, _ambiguous(evidence), evidence)
    return Attribution(target.enrollment_id, None, ())


def _actor(found: Match, confidence: str) -> dict[str, Any]:
    return {
        "user_id": found.user_id, "name": None, "real_user_id": found.real_user_id,
        "via": found.via, "developer_key_id": None, "request_id": found.view_id,
        "event_time": found.at.strftime("%Y-%m-%dT%H:%M:%SZ"), "source": SOURCE,
        "confidence": confidence, "app_name": found.app_name, "user_agent": found.user_agent,
        "candidates": None,
    }


def _ambiguous(evidence: Sequence[Match]) -> dict[str, Any]:
    """Several people could have made it: list them all, name none."""
    return {
        "user_id": None, "name": None, "real_user_id": None, "via": None,
        "developer_key_id": None, "request_id": None, "event_time": None, "source": SOURCE,
        "confidence": AMBIGUOUS, "app_name": None, "user_agent": None,
        "candidates": [
            {"user_id": m.user_id, "via": m.via, "request_id": m.view_id,
             "event_time": m.at.strftime("%Y-%m-%dT%H:%M:%SZ")}
            for m in evidence
        ],
    }


def reason(actor: Mapping[str, Any]) -> str:
    """The sentence added to the row's reason; an ambiguous one names nobody."""
    if actor["confidence"] == AMBIGUOUS:
        count = len(actor.get("candidates") or ())
        return (
            f"Canvas page views show {count} people making an enrollment in this course at "
            "that time; none is named."
        )
    who = f"{actor['name']} (user {actor['user_id']})" if actor.get("name") else (
        f"user {actor['user_id']}"
    )
    what = {
        VIA_UI: "adding people in the web UI",
        VIA_API: "calling the enrollments API",
        VIA_SELF: "enrolling themselves",
    }[actor["via"]]
    sure = {CONFIRMED: "the same request", PROBABLE: "the only match at that time"}[
        actor["confidence"]
    ]
    return f"Canvas page views show {who} {what} ({actor['confidence']}: {sure})."


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _link(view: Mapping[str, Any], name: str) -> int | None:
    links = view.get("links")
    value = links.get(name) if isinstance(links, Mapping) else None
    return value if isinstance(value, int) else None
