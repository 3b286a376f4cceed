"""The naive forwarder: Flask + requests, the obvious twenty lines.

    BENCH_UPSTREAM_URL=http://127.0.0.1:PORT gunicorn -k gthread -w 2 --threads 4 naive_forwarder:app
"""

import os
import threading

import requests
from flask import Flask, Response, request

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
       "content-encoding", "content-length"}


def make_app(upstream_url: str) -> Flask:
    app = Flask(__name__)
    local = threading.local()  # a requests.Session per thread: its pool is reused

    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])
    def forward(path: str) -> Response:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        answer = local.session.request(request.method, f"{upstream_url}/{path}",
                                       params=request.args, data=request.get_data(),
                                       headers=headers, allow_redirects=False, timeout=60)
        out = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP]
        return Response(answer.content, status=answer.status_code, headers=out)

    return app


app = make_app(os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:9"))
