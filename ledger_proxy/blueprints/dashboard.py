"""The dashboard at /ledger/: sign in with Canvas, look a course up, see who made each enrollment.

Server-rendered (Jinja, no JavaScript). The lookup is the JSON endpoint's own `run()`, made with
the signed-in user's token, so the page shows exactly what Canvas lets that user see.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import secrets
from collections.abc import Callable
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .. import lookup, oauth, web_session
from ..canvas import CANVAS_FAILURES, CanvasRefused, proxy_error, token_hash
from ..db import get_db
from ..provenance import VERDICTS
from ..runtime import runtime
from .lookup import run

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/ledger")
STATIC = Path(__file__).resolve().parent.parent / "static"

VERDICT_LABELS = {
    "integration": "Integration",
    "sis": "SIS",
    "manual": "Manual",
    "pending": "Pending",
    "unknown": "Unknown",
    "ambiguous": "Ambiguous",
}
VERDICT_MEANINGS = {
    "integration": "The ledger saw Canvas create it for a request through the proxy.",
    "sis": "Canvas shows an SIS import id, or it matches the loaded SIS roster.",
    "manual": "Not made through the proxy nor by SIS: the web UI, or a script bypassing it.",
    "pending": "A request through the proxy may have made it; its outcome is not settled yet.",
    "unknown": "Not seen by the proxy, and Canvas hides SIS fields from you: SIS not ruled out.",
    "ambiguous": "Made while a request whose answer was lost was in flight, but SIS may have "
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
    web_session.configure(app)
    app.register_blueprint(bp)


@bp.context_processor
def _page_globals() -> dict[str, Any]:
    return {
        "csrf_token": web_session.csrf_token,
        "signed_in": web_session.signed_in(),
        "verdicts": VERDICTS,
        "verdict_labels": VERDICT_LABELS,
        "verdict_meanings": VERDICT_MEANINGS,
        "role_names": ROLE_NAMES,
    }


@bp.after_request
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


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return error_page(exc.code or 500, exc.name, exc.description or exc.name)


@bp.errorhandler(Exception)
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
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


@bp.before_request
def _check_csrf() -> Response | None:
    if request.method == "POST" and not web_session.csrf_ok(request.form.get("csrf_token")):
        return error_page(
            400,
            "Form expired",
            "This form did not come from this page, or your session changed. "
            "Reload the page and try again.",
        )
    return None


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
    return Response(render_template("dashboard/index.html"), content_type="text/html")


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
        result = run(signed.token, query)
    except CanvasRefused as refusal:
        return _refused(refusal, course_id)
    except CANVAS_FAILURES as exc:
        error = proxy_error(exc)
        return error_page(error.http_status, "Canvas did not answer", error.message)
    numeric_ids = {row.get("course_id") for row in result["enrollments"]}
    body = render_template(
        "dashboard/course.html",
        course_ref=course_id,
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
    message = canvas_message(refusal)
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


def canvas_message(refusal: CanvasRefused) -> str:
    """The human part of a Canvas error body (JSON errors, a message, or plain text)."""
    text = refusal.content.decode("utf-8", errors="replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500] or "no explanation given"
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message", ""))[:500]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:500]
    return text[:500]


# Signing in and out


@bp.get("/login")
def login() -> Response:
    if web_session.signed_in() is not None:
        return redirect(_safe_next(request.args.get("next")))
    return _login_page(request.args.get("next"))


def _login_page(next_url: str | None, error: str | None = None, status: int = 200) -> Response:
    body = render_template(
        "dashboard/login.html",
        oauth=bool(current_app.config["OAUTH_CLIENT_ID"]),
        canvas_url=current_app.config["CANVAS_URL"],
        next_url=next_url or "",
        error=error,
    )
    return Response(body, status=status, content_type="text/html")


@bp.post("/login")
def login_submit() -> Response:
    next_url = request.form.get("next")
    config = current_app.config
    if config["OAUTH_CLIENT_ID"]:
        state = secrets.token_urlsafe(32)
        session["oauth"] = {"state": state, "next": _safe_next(next_url)}
        return redirect(
            oauth.authorize_url(
                config["CANVAS_URL"], config["OAUTH_CLIENT_ID"], _redirect_uri(), state
            )
        )
    token = (request.form.get("token") or "").strip()
    if not token:
        return _login_page(next_url, "Paste a Canvas access token.", 400)
    rt = runtime()
    try:
        # Canvas itself, never the identity cache: a revoked token must not sign in.
        actor = rt.confirmed_actor(get_db(), token, token_hash(rt.token_key, token))
    except CANVAS_FAILURES as exc:
        error = proxy_error(exc)
        return error_page(error.http_status, "Canvas did not answer", error.message)
    if actor is None:
        return _login_page(next_url, "Canvas did not accept this token.", 401)
    web_session.sign_in(token, actor.user_id, actor.name, expires_in=None, oauth=False)
    log.info("dashboard sign-in by Canvas user %s (token)", actor.user_id)
    return redirect(_safe_next(next_url))


@bp.get("/oauth/callback")
def oauth_callback() -> Response:
    pending = session.pop("oauth", None)
    state = request.args.get("state", "")
    if not isinstance(pending, dict) or not secrets.compare_digest(
        str(pending.get("state", "")).encode(), state.encode()
    ):
        return error_page(
            400,
            "Sign-in not recognised",
            "This sign-in did not start here, or it was already used. Sign in again.",
            sign_in=True,
        )
    if request.args.get("error"):
        reason = request.args.get("error_description") or request.args["error"]
        return error_page(
            403, "Sign-in refused", f"Canvas did not sign you in: {reason}", sign_in=True
        )
    config = current_app.config
    try:
        grant = oauth.exchange_code(
            runtime().canvas,
            config["OAUTH_CLIENT_ID"],
            config["OAUTH_CLIENT_SECRET"],
            _redirect_uri(),
            request.args.get("code", ""),
        )
    except oauth.OAuthRefused as refused:
        return error_page(
            400, "Sign-in refused", f"Canvas refused the sign-in: {refused.message}", sign_in=True
        )
    except CANVAS_FAILURES as exc:
        error = proxy_error(exc)
        return error_page(error.http_status, "Canvas did not answer", error.message)
    web_session.sign_in(
        grant.access_token, grant.user_id, grant.user_name, expires_in=grant.expires_in, oauth=True
    )
    log.info("dashboard sign-in by Canvas user %s (OAuth2)", grant.user_id)
    return redirect(_safe_next(pending.get("next")))


@bp.post("/logout")
def logout() -> Response:
    signed = web_session.signed_in()
    if signed is not None and signed.oauth:
        # A token made for this session only: ask Canvas to forget it. A pasted token is the
        # admin's own, and stays theirs.
        oauth.revoke(runtime().canvas, signed.token)
    web_session.sign_out()
    flash("You are signed out.", "info")
    return redirect(url_for("dashboard.login"))


def _redirect_uri() -> str:
    return url_for("dashboard.oauth_callback", _external=True)


def _safe_next(next_url: Any) -> str:
    """Where to go after signing in: a dashboard page of this site, never elsewhere."""
    home = url_for("dashboard.index")
    if not isinstance(next_url, str) or not next_url.startswith(home):
        return home
    if any(ord(char) < 32 or ord(char) == 127 for char in next_url):
        return home  # CR/LF would split the Location header; browsers drop tabs from URLs
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or "\\" in next_url or "//" in parts.path:
        return home
    return next_url
