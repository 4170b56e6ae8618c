"""`ANY /proxy/<provider>/<path>`: a CORS preflight answered here, every other call run through
the phases (`phases.run`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .call import Call
from .phases import run

bp = Blueprint("proxy", __name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
UPSTREAM = "jetpero.upstream"  # app.extensions key: this worker's `upstream.Upstream`
CONCERNS = "jetpero.concerns"  # app.extensions key: the proxy's `call.Concerns`


def _preflight(origin: str) -> Response:
    """Answered without a token: grants nothing; the real request is checked per project."""
    response = Response(status=204)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = ", ".join(METHODS)
    requested = request.headers.get("Access-Control-Request-Headers", "")
    if requested:
        response.headers["Access-Control-Allow-Headers"] = requested[:1024]
    response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


@bp.route("/proxy/<provider>/", methods=METHODS, strict_slashes=False)  # no HTML redirect for /proxy/x
def proxy_root(provider: str):
    """The provider's base URL itself. Its own endpoint rather than `defaults={"path": ""}` on
    the one below: werkzeug would check every match of that one against the defaults."""
    return proxy(provider, "")


@bp.route("/proxy/<provider>/<path:path>", methods=METHODS)
def proxy(provider: str, path: str):
    req = request._get_current_object()  # one context lookup, not one per attribute
    environ = req.environ  # headers read straight from it: cheaper than through req.headers
    origin = environ.get("HTTP_ORIGIN")
    if req.method == "OPTIONS" and origin and environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
        return _preflight(origin)
    extensions = current_app.extensions
    return run(Call(req, provider, path), extensions["jetpero"], extensions[UPSTREAM], extensions[CONCERNS])
