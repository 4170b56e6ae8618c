"""The framework floor: the least a Flask + urllib3 proxy can do. Served by bench.run with
``gunicorn -k gevent -w 2 bench.floor:app``; BENCH_UPSTREAM is the upstream base URL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import urllib3
from flask import Flask, Response, request

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8101").rstrip("/")
http = urllib3.PoolManager(maxsize=1000, retries=False)
app = Flask(__name__)


@app.route("/<path:path>", methods=["GET", "POST"])
def forward(path: str) -> Response:
    query = request.query_string.decode()
    url = f"{UPSTREAM}/{path}" + (f"?{query}" if query else "")
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    upstream = http.request(
        request.method, url, body=request.get_data(), headers=headers,
        preload_content=False, decode_content=False, redirect=False, retries=False,
    )  # fmt: skip

    def relay() -> Iterator[bytes]:
        done = False
        try:
            while chunk := upstream.read1(65536):
                yield chunk
            done = True
        finally:
            if not done:  # client went away mid-body: this connection cannot be reused
                upstream.close()
            upstream.release_conn()

    out = {"Content-Type": upstream.headers.get("Content-Type", "application/octet-stream")}
    if "Content-Length" in upstream.headers:
        out["Content-Length"] = upstream.headers["Content-Length"]
    return Response(relay(), status=upstream.status, headers=out)
