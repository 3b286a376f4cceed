"""What the dashboard tests share: a course of mixed origins, signing in, reading the page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
import requests
from canvasapi import Canvas

from .test_lookup_e2e import BYPASS_CLIENT, expected_verdict

# Test modules import the fixtures by their function names; pytest knows them by `name`.
__all__ = ["expected_verdict", "mixed_course_fixture", "oauth_proxy_fixture", "page_rows", "browser_session"]

TAG_LABELS = {
    "integration": "Integration",
    "sis": "SIS",
    "manual": "Manual",
    "pending": "Pending",
    "unknown": "Unknown",
}


def build_mixed_course(world: Any, sim: Any, proxy: Any) -> None:
    """Rows made through the proxy, by hand in the web UI, by a bypassing script and by SIS."""
    course_id = world.course["id"]
    students = world.students
    canvas = Canvas(f"{proxy.url}/i/roster-sync", world.admin["token"])
    course = canvas.get_course(course_id)
    course.enroll_user(students[0]["id"], enrollment={"enrollment_state": "active"})
    canvas.get_section(world.section_b).enroll_user(students[1]["id"], enrollment={"type": "TaEnrollment"})
    course.enroll_user(students[7]["id"], enrollment={"type": "DesignerEnrollment"}).deactivate("delete")
    course.enroll_user(students[6]["id"], enrollment={"enrollment_state": "active"})  # SIS claims it later
    sim.control("POST", "ui/enrollments", {"course_id": course_id, "user_id": students[2]["id"], "actor_user_id": world.teacher["id"]})
    sim.control("POST", "api_bypass/enrollments", {"course_id": course_id, "user_id": students[3]["id"], "actor_user_id": world.admin["id"], "user_agent": BYPASS_CLIENT})
    for n in range(2):
        sim.add_user(f"SIS Person {n}", sis_user_id=f"SIS-{n}")
    sim.control(
        "POST", "sis_imports",
        {"csv": "course_id,user_id,role,section_id,status\n"
                "BIO-101,SIS-0,student,,active\nBIO-101,SIS-1,ta,BIO-101-B,active\nBIO-101,S-07,student,,active\n"},
    )


@pytest.fixture(name="mixed_course")
def mixed_course_fixture(world: Any, sim: Any, make_proxy: Any) -> Any:
    """A proxy (pasted-token sign-in, plain http) in front of a course of mixed origins."""
    proxy = make_proxy(sim.url, SESSION_COOKIE_SECURE=False, ADMIN_USER_IDS=str(world.admin["id"]))
    build_mixed_course(world, sim, proxy)
    return proxy


@pytest.fixture(name="oauth_proxy")
def oauth_proxy_fixture(world: Any, sim: Any, make_proxy: Any) -> Any:
    """A proxy whose dashboard signs in through the simulator's OAuth2 (a registered key)."""
    key = sim.control("POST", "oauth/developer_keys", {"name": "ledger-proxy dashboard", "redirect_uri": "http://127.0.0.1/"})
    proxy = make_proxy(
        sim.url, SESSION_COOKIE_SECURE=False, ADMIN_USER_IDS=str(world.admin["id"]),
        OAUTH_CLIENT_ID=key["client_id"], OAUTH_CLIENT_SECRET=key["client_secret"],
    )
    proxy.developer_key = key
    return proxy


def browser_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only
    return session


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in_with_token(session: requests.Session, proxy: Any, token: str) -> requests.Response:
    page = session.get(f"{proxy.url}/ledger/login", timeout=10)
    return session.post(
        f"{proxy.url}/ledger/login", data={"csrf_token": csrf_of(page.text), "token": token, "next": ""},
        allow_redirects=False, timeout=10,
    )


class _RowParser(HTMLParser):
    """Each enrollment row of the dashboard's table: id, data-provenance, the tag's own text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._in_tag = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr" and attributes.get("data-enrollment-id"):
            self.rows.append({"id": int(attributes["data-enrollment-id"] or 0), "provenance": attributes["data-provenance"], "tag": ""})
        classes = (attributes.get("class") or "").split()
        if tag == "span" and "tag" in classes and self.rows:
            self._in_tag = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_tag = False

    def handle_data(self, data: str) -> None:
        if self._in_tag and self.rows:
            self.rows[-1]["tag"] += data.strip()


def page_rows(html: str) -> list[dict[str, Any]]:
    parser = _RowParser()
    parser.feed(html)
    return parser.rows
