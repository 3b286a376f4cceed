"""The dashboard's pages at /ledger/: look a course up, see who made each enrollment.

Server-rendered (Jinja, no JavaScript). The lookup is the JSON endpoint's own `core.lookup.run`,
made with the signed-in user's token, so the page shows exactly what Canvas lets that user see.
Signing in and out is web/auth.py, as flaskr keeps `auth` apart from `blog`.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from collections.abc import Callable
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..core import lookup, overview
from ..core.vocab import AMBIGUOUS, INTEGRATION, MANUAL, PENDING, SIS, UNKNOWN, VERDICTS
from ..runtime import get_db, runtime
from ..upstream.canvas import CANVAS_FAILURES, CanvasAnswerCut, CanvasRefused, proxy_error
from . import chart
from . import session as web_session
from .lookup import attributed, sources

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/ledger")
STATIC = Path(__file__).resolve().parent.parent / "static"

VERDICT_LABELS = {
    INTEGRATION: "Integration",
    SIS: "SIS",
    MANUAL: "Manual",
    PENDING: "Pending",
    UNKNOWN: "Unknown",
    AMBIGUOUS: "Ambiguous",
}
VERDICT_MEANINGS = {
    INTEGRATION: "The ledger saw Canvas create it for a request through the proxy.",
    SIS: "Canvas shows an SIS import id, or it matches the loaded SIS roster.",
    MANUAL: "Not made through the proxy nor by SIS: the web UI, or a script bypassing it.",
    PENDING: "A request through the proxy may have made it; its outcome is not settled yet.",
    UNKNOWN: "Not seen by the proxy, and Canvas hides SIS fields from you: SIS not ruled out.",
    AMBIGUOUS: "Made while a request whose answer was lost was in flight, but SIS may have "
    "made it too: not credited to the integration.",
}
# Canvas's built-in enrollment types, as its web UI names them (custom roles show their name).
ROLE_NAMES = {
    "StudentEnrollment": "Student",
    "TeacherEnrollment": "Teacher",
    "TaEnrollment": "TA",
    "DesignerEnrollment": "Designer",
    "ObserverEnrollment": "Observer",
}
EXPORT_PATH = "/ledger/v1/export"


def init_app(app: Flask) -> None:
    """The pages and the sign-in flow (web/auth.py), and the session cookie they share."""
    from . import auth

    web_session.configure(app)
    app.register_blueprint(bp)
    app.register_blueprint(auth.bp)


def install_page_hooks(blueprint: Blueprint) -> None:
    """What every dashboard page gets, whichever blueprint serves it: the template globals,
    the security headers, HTML error pages, and the CSRF check on forms."""
    blueprint.context_processor(_page_globals)
    blueprint.after_request(_page_headers)
    blueprint.register_error_handler(HTTPException, _http_error)
    blueprint.register_error_handler(Exception, _unexpected)
    blueprint.before_request(_check_csrf)


def _page_globals() -> dict[str, Any]:
    return {
        "csrf_token": web_session.csrf_token,
        "signed_in": web_session.signed_in(),
        "verdicts": VERDICTS,
        "verdict_labels": VERDICT_LABELS,
        "verdict_meanings": VERDICT_MEANINGS,
        "role_names": ROLE_NAMES,
    }


def _page_headers(response: Response) -> Response:
    # Forms may post to the proxy only, and the OAuth sign-in redirects on to Canvas.
    canvas = current_app.config["CANVAS_URL"]
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        f"form-action 'self' {canvas}; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(exc: HTTPException) -> Response:
    return error_page(exc.code or 500, exc.name, exc.description or exc.name)


def _unexpected(exc: Exception) -> Response:
    log.exception("dashboard error: %s", type(exc).__name__)
    return error_page(500, "Internal error", "ledger-proxy hit an internal error.")


def error_page(status: int, title: str, message: str, **extra: Any) -> Response:
    body = render_template(
        "dashboard/error.html", status=status, title=title, message=message, **extra
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def signed_in_view(view: Callable[..., Response]) -> Callable[..., Response]:
    """The view for a signed-in user; anyone else is sent to the sign-in page first."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        if web_session.signed_in() is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


def _check_csrf() -> Response | None:
    if request.method == "POST" and not web_session.csrf_ok(request.form.get("csrf_token")):
        return error_page(
            400,
            "Form expired",
            "This form did not come from this page, or your session changed. "
            "Reload the page and try again.",
        )
    return None


install_page_hooks(bp)


# Pages


@bp.get("/static/<path:filename>")
def static(filename: str) -> Response:
    """The dashboard's stylesheet, sent from memory with an ETag: it is small, and a response
    body that is an open file would be left open when a 304 or a HEAD never reads it."""
    found = _static_file(filename)
    if found is None:
        abort(404)
    content, etag = found
    response = Response(content, mimetype=mimetypes.guess_type(filename)[0] or "text/plain")
    response.set_etag(etag)
    response.cache_control.no_cache = True  # revalidate: cheap, and never a stale style
    return response.make_conditional(request)


@lru_cache(maxsize=8)
def _static_file(filename: str) -> tuple[bytes, str] | None:
    # A NUL or an over-long name is no file of ours (and the OS would raise, not say no).
    if "\x00" in filename or len(filename) > 255:
        return None
    try:
        path = (STATIC / filename).resolve()
        if not path.is_relative_to(STATIC) or not path.is_file():
            return None
    except (OSError, ValueError):
        return None
    content = path.read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:32]


@bp.get("/")
@signed_in_view
def index() -> Response:
    """The lookup form; for admins, first the account's picture (core/overview.py)."""
    signed = web_session.signed_in()
    admin = signed is not None and signed.user_id in current_app.config["ADMIN_USER_IDS"]
    summary = overview.overview(get_db()) if admin else None
    audit = summary["audit"] if summary else None
    audit_url = (
        url_for("audits.audit_status", account_id=audit["account_id"], audit_id=audit["id"])
        if audit
        else None
    )
    svg = _weekly_chart(summary["weekly"], summary["chart_verdicts"]) if summary else None
    body = render_template(
        "dashboard/index.html", overview=summary, audit_url=audit_url, chart=svg
    )
    return Response(body, content_type="text/html")


CHART_TITLE = "Enrollments made per week, by verdict"


def _weekly_chart(weeks: list[dict[str, Any]], verdicts: tuple[str, ...]) -> Markup:
    """The overview's chart (web/chart.py): SVG built from escaped text only."""
    total = {verdict: sum(week["counts"][verdict] for week in weeks) for verdict in verdicts}
    description = (
        f"Stacked bars for the last {len(weeks)} weeks, from {weeks[0]['week']} to "
        f"{weeks[-1]['week']}: "
        + ", ".join(f"{VERDICT_LABELS[v]} {n}" for v, n in total.items())
        + " in all. The table below gives each week's numbers."
    )
    # Markup: weekly_svg escapes every text it writes.
    return Markup(chart.weekly_svg(weeks, verdicts, VERDICT_LABELS, CHART_TITLE, description))


@bp.get("/courses")
@signed_in_view
def find_course() -> Response:
    """The lookup form's target: on to the course's own, bookmarkable page."""
    course = request.args.get("course", "").strip()
    if not course:
        flash("Enter a course id, or sis_course_id:... for an SIS id.", "error")
        return redirect(url_for("dashboard.index"))
    return redirect(_course_url(course, *_filters()))


@bp.get("/courses/<path:course_id>")
@signed_in_view
def course(course_id: str) -> Response:
    provenance, include_deleted = _filters()
    signed = web_session.signed_in()
    assert signed is not None
    query = lookup.Query("courses", course_id, include_deleted, provenance)
    try:
        if request.args.get("attribute") == "page_views":
            # Costs Canvas requests (stored after the first time): only when the button asks.
            result = attributed(signed.token, query, refresh=False)
        else:
            result = lookup.run(token=signed.token, query=query, **sources())
    except CanvasRefused as refusal:
        return _refused(refusal, course_id)
    except CANVAS_FAILURES as exc:
        error = proxy_error(exc)
        return error_page(error.http_status, "Canvas did not answer", error.message)
    numeric_ids = {row.get("course_id") for row in result["enrollments"]}
    body = render_template(
        "dashboard/course.html",
        course_ref=course_id,
        course_name=_course_name(signed.token, course_id),
        course_id=numeric_ids.pop() if len(numeric_ids) == 1 else None,
        result=result,
        provenance=provenance,
        include_deleted=include_deleted,
        filter_url=lambda verdict: _course_url(course_id, verdict, include_deleted),
        deleted_url=_course_url(course_id, provenance, not include_deleted),
        export_path=request.script_root + EXPORT_PATH,
        is_admin=signed.user_id in current_app.config["ADMIN_USER_IDS"],
    )
    return Response(body, content_type="text/html")


def _course_name(token: str, course_ref: str) -> str | None:
    """The course's name as Canvas shows it to this user; None (the page shows the id alone)
    when Canvas does not say, so a failure here never breaks the lookup's page."""
    try:
        course = runtime().canvas.course(course_ref, token)
    except (CanvasRefused, *CANVAS_FAILURES, CanvasAnswerCut) as exc:
        log.info("course %s: no name from Canvas (%s)", course_ref, type(exc).__name__)
        return None
    name = course.get("name")
    return name if isinstance(name, str) and name.strip() else None


def _filters() -> tuple[str | None, bool]:
    provenance = request.args.get("provenance") or None
    if provenance is not None and provenance not in VERDICTS:
        abort(400, description=f"Show must be one of: {', '.join(VERDICTS)}.")
    include_deleted = request.args.get("include_deleted", "") in ("1", "true", "on")
    return provenance, include_deleted


def _course_url(course_id: str, provenance: str | None, include_deleted: bool) -> str:
    return url_for(
        "dashboard.course",
        course_id=course_id,
        provenance=provenance,
        include_deleted="1" if include_deleted else None,
    )


def _refused(refusal: CanvasRefused, course_id: str) -> Response:
    """Canvas said no: its own status and message, on a page."""
    message = refusal.message()
    if refusal.status == 401:
        # The token no longer works (revoked, expired): this session is over.
        web_session.sign_out()
        return error_page(
            401, "Signed out", f"Canvas no longer accepts your sign-in: {message}", sign_in=True
        )
    titles = {403: "Not allowed", 404: "Not found", 429: "Canvas is throttling requests"}
    return error_page(
        refusal.status,
        titles.get(refusal.status, f"Canvas answered {refusal.status}"),
        f"Canvas answered {refusal.status} for course {course_id}: {message}",
    )
