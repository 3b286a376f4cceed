"""The "Python floor": a raw WSGI function forwarding with one urllib3 connection pool.

    BENCH_UPSTREAM_URL=http://127.0.0.1:PORT gunicorn -k gthread -w 2 --threads 4 floor_forwarder:app
"""

import os
from urllib.parse import urlsplit

import urllib3

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


def make_app(upstream_url: str):
    target = urlsplit(upstream_url)
    pool = urllib3.HTTPConnectionPool(target.hostname, target.port, maxsize=8, retries=False)

    def app(environ, start_response):
        headers = {k[5:].replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers = {k: v for k, v in headers.items() if k.lower() not in HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        query = environ.get("QUERY_STRING")
        url = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        answer = pool.urlopen(environ["REQUEST_METHOD"], url, body=body, headers=headers,
                              redirect=False, decode_content=False)
        out = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP]
        start_response(f"{answer.status} {answer.reason}", out)
        return [answer.data]

    return app


app = make_app(os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:9"))
