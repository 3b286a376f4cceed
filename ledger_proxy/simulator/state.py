"""The simulator's in-memory world: records, indexes, id lookups, settings and faults (no Flask)."""

from __future__ import annotations

import itertools
import re
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger_proxy.simulator.live_events import LiveEventsEmitter
from ledger_proxy.simulator.models import (
    BUILT_IN_ROLE_IDS,
    ROOT_ACCOUNT_ID,
    Account,
    Course,
    Enrollment,
    Job,
    Progress,
    Role,
    Section,
    SisImport,
    User,
    utcnow,
)

_NUMERIC_ID = re.compile(r"\d{1,19}")
SIS_COLUMNS = {
    "user": ("sis_user_id", "sis_login_id", "sis_integration_id"),
    "course": ("sis_course_id", "sis_integration_id"),
    "section": ("sis_section_id", "sis_integration_id"),
    "account": ("sis_account_id",),
}


@dataclass
class Settings:
    """Runtime switches, changed through `POST /_sim/settings`."""

    latency_seconds: float = 0.0
    auto_run_jobs: bool = True
    throttle: int | None = None  # None, 403 or 429
    rate_limit_remaining: float = 600.0
    throttled_remaining: float = -3.2
    request_cost: float = 0.01
    request_log_limit: int = 10_000
    # Account reports (simulator/reports.py): polls of a run before it ends; how it ends
    # (complete, error, aborted, or stuck: running forever); raw lines appended to its CSV.
    report_polls: int = 2
    report_outcome: str = "complete"
    report_extra_lines: list[str] = field(default_factory=list)


@dataclass
class FaultRule:
    """One `/_sim/faults` rule; `times=None` means it applies forever."""

    action: str  # delay, drop, error, throttle
    method: str | None = None
    path: str | None = None
    when: str = "before"
    seconds: float = 0.0
    status: int | None = None
    times: int | None = None
    fired: int = 0

    def matches(self, method: str, path: str, when: str) -> bool:
        if self.when != when or self.times == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return not self.path or re.search(self.path, path) is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action, "method": self.method, "path": self.path, "when": self.when,
            "seconds": self.seconds, "status": self.status, "times": self.times,
            "fired": self.fired,
        }


@dataclass
class _Counters:
    users: itertools.count = field(default_factory=lambda: itertools.count(1))
    courses: itertools.count = field(default_factory=lambda: itertools.count(1))
    sections: itertools.count = field(default_factory=lambda: itertools.count(1))
    roles: itertools.count = field(default_factory=lambda: itertools.count(10))
    enrollments: itertools.count = field(default_factory=lambda: itertools.count(1))
    progress: itertools.count = field(default_factory=lambda: itertools.count(1))
    sis_imports: itertools.count = field(default_factory=lambda: itertools.count(1))
    error_reports: itertools.count = field(default_factory=lambda: itertools.count(1000))
    requests: itertools.count = field(default_factory=lambda: itertools.count(1))
    reports: itertools.count = field(default_factory=lambda: itertools.count(1))


class SimulatorState:
    """Everything the fake Canvas knows. Callers hold `lock` around any read-modify-write."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings = Settings()
        self.faults: list[FaultRule] = []
        self.request_log: deque[dict[str, Any]] = deque(maxlen=self.settings.request_log_limit)
        self._frozen_now: datetime | None = None
        self.live_events = LiveEventsEmitter()
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every record, job, fault and logged request; keep root account 1."""
        with self.lock:
            self.ids = _Counters()
            self.accounts = {ROOT_ACCOUNT_ID: Account(ROOT_ACCOUNT_ID, "Simulated Canvas")}
            self.users: dict[int, User] = {}
            self.courses: dict[int, Course] = {}
            self.sections: dict[int, Section] = {}
            self.roles: dict[int, Role] = {
                role_id: Role(role_id, name, name, built_in=True)
                for name, role_id in BUILT_IN_ROLE_IDS.items()
            }
            self.enrollments: dict[int, Enrollment] = {}
            self.by_course: dict[int, list[int]] = {}
            self.by_match: dict[tuple[Any, ...], int] = {}
            self.tokens: dict[str, int] = {}
            self.progresses: dict[int, Progress] = {}
            self.sis_imports: dict[int, SisImport] = {}
            self.account_reports: dict[int, Any] = {}  # simulator/reports.py AccountReport
            self.jobs: deque[Job] = deque()
            # OAuth2 (simulator/oauth.py): developer keys by client id, unused codes, tokens
            # issued through OAuth, and the user that /login/oauth2/auth approves for.
            self.developer_keys: dict[str, dict[str, Any]] = {}
            self.oauth_codes: dict[str, dict[str, Any]] = {}
            self.oauth_tokens: dict[str, str] = {}  # token -> client id
            self.oauth_approve: dict[str, Any] = {"user_id": None, "deny": False}
            self.observer_links: dict[int, list[int]] = {}  # student id -> observer ids
            self.merged_users: dict[int, int] = {}  # merged (deleted) user id -> survivor id
            # Page views (simulator/page_views.py): each user's trail, and every id in order.
            self.page_views: dict[int, list[dict[str, Any]]] = {}
            self.page_view_seq: list[str] = []
            self.faults = []
            self.request_log.clear()
            self.settings = Settings()
            self._frozen_now = None
            self.live_events.reset()

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._frozen_now or utcnow()

    def set_clock(self, moment: datetime | None) -> None:
        """Freeze the clock at `moment` (None: real time again)."""
        self._frozen_now = moment

    def advance_clock(self, seconds: float) -> None:
        self._frozen_now = self.now() + timedelta(seconds=seconds)

    # -- creation --------------------------------------------------------------------------

    def add_user(
        self, name: str, *, sortable_name: str | None = None, short_name: str | None = None,
        sis_user_id: str | None = None, integration_id: str | None = None,
        login_id: str | None = None, admin: bool = False, token: str | None = None,
        registered: bool = True,
    ) -> User:
        with self.lock:
            user = User(
                id=next(self.ids.users), name=name,
                sortable_name=sortable_name or default_sortable_name(name),
                short_name=short_name or name, token=token or f"sim-{secrets.token_hex(12)}",
                created_at=self.now(), sis_user_id=sis_user_id, integration_id=integration_id,
                login_id=login_id, admin=admin, registered=registered,
            )
            if user.token in self.tokens:
                raise ValueError(f"token already in use: {user.token}")
            self.users[user.id] = user
            self.tokens[user.token] = user.id
            return user

    def add_course(
        self, name: str, *, sis_course_id: str | None = None, workflow_state: str = "available",
        course_code: str | None = None, integration_id: str | None = None,
    ) -> Course:
        if workflow_state not in ("available", "unpublished", "completed", "deleted"):
            raise ValueError(f"unknown course workflow_state: {workflow_state}")
        with self.lock:
            course_id = next(self.ids.courses)
            section = self._new_section(course_id, name, default=True)
            course = Course(
                id=course_id, name=name, course_code=course_code or name,
                workflow_state=workflow_state, default_section_id=section.id,
                created_at=self.now(), sis_course_id=sis_course_id,
                integration_id=integration_id,
            )
            self.courses[course.id] = course
            self.by_course[course.id] = []
            return course

    def add_section(
        self, course_id: int, name: str, *, sis_section_id: str | None = None,
        integration_id: str | None = None,
    ) -> Section:
        with self.lock:
            if course_id not in self.courses:
                raise KeyError(f"no course {course_id}")
            return self._new_section(
                course_id, name, sis_section_id=sis_section_id, integration_id=integration_id,
            )

    def _new_section(self, course_id: int, name: str, **fields: Any) -> Section:
        section = Section(
            id=next(self.ids.sections), course_id=course_id, name=name,
            created_at=self.now(), **fields,
        )
        self.sections[section.id] = section
        return section

    def add_role(self, name: str, base_role_type: str, workflow_state: str = "active") -> Role:
        if base_role_type not in BUILT_IN_ROLE_IDS:
            raise ValueError(f"unknown base_role_type: {base_role_type}")
        with self.lock:
            role = Role(next(self.ids.roles), name, base_role_type, workflow_state)
            self.roles[role.id] = role
            return role

    def store_enrollment(self, enrollment: Enrollment) -> None:
        self.enrollments[enrollment.id] = enrollment
        self.by_course.setdefault(enrollment.course_id, []).append(enrollment.id)
        self.by_match[enrollment.match_key()] = enrollment.id

    def next_enrollment_id(self) -> int:
        return next(self.ids.enrollments)

    def next_error_report_id(self) -> int:
        with self.lock:
            return next(self.ids.error_reports)

    # -- lookups ---------------------------------------------------------------------------

    def user_for_token(self, token: str) -> User | None:
        user_id = self.tokens.get(token)
        return self.users.get(user_id) if user_id is not None else None

    def find_user(self, ref: Any, caller: User | None = None) -> User | None:
        """A user by numeric id, `self` or a `sis_*:` form (§2.3); None when nothing matches."""
        if isinstance(ref, str) and ref.strip() == "self":
            return caller
        found = self._by_ref("user", ref, self.users)
        return found if isinstance(found, User) else None

    def find_course(self, ref: Any) -> Course | None:
        found = self._by_ref("course", ref, self.courses)
        return found if isinstance(found, Course) else None

    def find_section(self, ref: Any) -> Section | None:
        found = self._by_ref("section", ref, self.sections)
        return found if isinstance(found, Section) else None

    def find_account(self, ref: Any) -> Account | None:
        if isinstance(ref, str) and ref.strip() == "self":  # as Canvas: the domain's root
            return self.accounts.get(ROOT_ACCOUNT_ID)
        found = self._by_ref("account", ref, self.accounts)
        return found if isinstance(found, Account) else None

    def find_role(self, ref: Any) -> Role | None:
        try:
            return self.roles.get(int(str(ref).strip()))
        except ValueError:
            return None

    def find_role_by_name(self, name: str) -> Role | None:
        for role in self.roles.values():
            if role.name == name and role.workflow_state != "deleted":
                return role
        return None

    def built_in_role(self, type_: str) -> Role:
        return self.roles[BUILT_IN_ROLE_IDS[type_]]

    def _by_ref(self, kind: str, ref: Any, table: dict[int, Any]) -> Any:
        parsed = parse_ref(ref)
        if parsed is None:
            return None
        column, value = parsed
        if column == "id":
            return table.get(int(value))
        if column not in SIS_COLUMNS[kind]:
            return None
        return next((row for row in table.values() if _sis_matches(row, column, value)), None)

    def find_match(self, key: tuple[Any, ...]) -> Enrollment | None:
        enrollment_id = self.by_match.get(key)
        return self.enrollments.get(enrollment_id) if enrollment_id is not None else None

    def course_enrollments(self, course_id: int) -> list[Enrollment]:
        return [self.enrollments[e] for e in self.by_course.get(course_id, [])]

    def has_active_enrollment(self, user_id: int, course_id: int, types: tuple[str, ...]) -> bool:
        return any(
            e.user_id == user_id and e.type in types and e.workflow_state == "active"
            for e in self.course_enrollments(course_id)
        )

    # -- faults and the request log --------------------------------------------------------

    def take_faults(self, method: str, path: str, when: str) -> list[FaultRule]:
        """The rules that fire for this request now, each spending one of its `times`."""
        with self.lock:
            fired = [rule for rule in self.faults if rule.matches(method, path, when)]
            for rule in fired:
                rule.fired += 1
                if rule.times is not None:
                    rule.times -= 1
            return fired

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = next(self.ids.requests)
            if self.request_log.maxlen != self.settings.request_log_limit:
                self.request_log = deque(self.request_log, self.settings.request_log_limit)
            self.request_log.append(entry)


def default_sortable_name(name: str) -> str:
    """Canvas's guess: "Jan Smith" -> "Smith, Jan"."""
    parts = name.split()
    if len(parts) < 2:
        return name
    return f"{parts[-1]}, {' '.join(parts[:-1])}"


def parse_ref(ref: Any) -> tuple[str, str] | None:
    """("id", "12") for numeric ids, (column, value) for `sis_column:value`, None otherwise."""
    if isinstance(ref, bool) or ref is None:
        return None
    if isinstance(ref, int):
        return ("id", str(ref)) if ref >= 0 else None
    text = str(ref).strip()
    if _NUMERIC_ID.fullmatch(text):
        return ("id", text)
    if text.startswith("hex:"):
        column, _, hex_value = text[4:].partition(":")
        try:
            return (column, bytes.fromhex(hex_value).decode("utf-8"))
        except ValueError:
            return None
    column, sep, value = text.partition(":")
    if sep and column.startswith("sis_") and value:
        return (column, value)
    return None


def _sis_matches(row: Any, column: str, value: str) -> bool:
    if column == "sis_login_id":
        login = getattr(row, "login_id", None)
        return login is not None and login.lower() == value.lower()
    attribute = "integration_id" if column == "sis_integration_id" else column
    return getattr(row, attribute, None) == value
