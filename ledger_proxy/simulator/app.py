"""Assemble the Canvas simulator app, and run it as a standalone server."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from ledger_proxy.simulator import (
    api,
    api_enrollments,
    control,
    errors,
    oauth,
    page_views,
    reports,
    world,
)
from ledger_proxy.simulator.state import SimulatorState
from ledger_proxy.simulator.web import (
    EXTENSION_KEY,
    add_canvas_headers,
    canvas_json,
    error_response,
)
from ledger_proxy.simulator.wire import API_PREFIX, SimulatorMiddleware


def create_simulator_app(seed_demo: bool = False) -> Flask:
    """A fresh fake Canvas; its `SimulatorState` is at `app.extensions["canvas_simulator"]`."""
    app = Flask(__name__)
    state = SimulatorState()
    app.extensions[EXTENSION_KEY] = state
    app.register_blueprint(api_enrollments.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(page_views.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(reports.bp)
    app.after_request(_after_api_request)
    app.register_error_handler(errors.ApiError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.wsgi_app = SimulatorMiddleware(app.wsgi_app, state)  # type: ignore[method-assign]
    if seed_demo:
        world.seed_demo(state)
    return app


def _is_api() -> bool:
    return request.path.startswith(API_PREFIX)


def _after_api_request(response: Response) -> Response:
    if not _is_api():
        return response
    page_views.record_api_request(current_app.extensions[EXTENSION_KEY])
    return add_canvas_headers(response)


def _http_error(exc: HTTPException) -> Response | HTTPException:
    """Unknown routes and methods under /api/ answer Canvas's 404; elsewhere, a JSON error."""
    if _is_api():
        return error_response(errors.not_found())
    response = jsonify({"error": exc.description})
    response.status_code = exc.code or 500
    return response


def _unexpected_error(exc: Exception) -> Response:
    current_app.logger.exception("simulator error on %s %s", request.method, request.path)
    state: SimulatorState = current_app.extensions[EXTENSION_KEY]
    return canvas_json(errors.internal_error_body(state.next_error_report_id()), 500)


def run_simulator(host: str, port: int, *, seed_demo: bool = False) -> None:
    """Serve the simulator until interrupted (threaded); prints its URL and the demo tokens."""
    app = create_simulator_app(seed_demo=seed_demo)
    server = make_server(host, port, app, threaded=True)
    url = f"http://{host}:{server.socket.getsockname()[1]}"
    print(f"Canvas simulator listening on {url}", flush=True)
    print(f"  Canvas API:   {url}/api/v1/   control API: {url}/_sim/", flush=True)
    if seed_demo:
        print(f"  admin token:   {world.ADMIN_TOKEN}", flush=True)
        print(f"  teacher token: {world.TEACHER_TOKEN}", flush=True)
        print(f"  student token: {world.STUDENT_TOKEN}", flush=True)
        print("  demo course:   1 (sis_course_id:DEMO-101), sections 1 and 2", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
