"""Bounds on what the admin API reads: body size, JSON depth, and no parse failure as a 500.

`app.json` (Flask's JSON provider) refuses JSON nested deeper than `MAX_DEPTH` before parsing
it and turns `RecursionError`/`MemoryError` into the `ValueError` Flask answers 400. The admin
API's bodies are parsed by webargs with the standard library, so each admin request with a JSON
body goes through `app.json` first, after its authentication: an unreadable one is the same 400
webargs gives for invalid JSON (`{"json": ["Invalid JSON body."]}`). `MAX_CONTENT_LENGTH` bounds
every body (413); the proxy sets its own limit per request (`JETPERO_MAX_REQUEST_BYTES`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Blueprint, Flask, current_app, request
from flask.json.provider import DefaultJSONProvider
from webargs.flaskparser import abort

MAX_ADMIN_BYTES = 1 << 20  # the largest admin request body
MAX_DEPTH = 64  # the deepest nesting of arrays and objects accepted

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # JSON strings, whose brackets do not nest
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def depth(data: bytes) -> int:
    """How deep arrays and objects nest in a JSON text (strings skipped), without recursion."""
    level = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        level += 1 if byte in _OPEN else -1
        deepest = max(deepest, level)
    return deepest


class GuardedJSON(DefaultJSONProvider):
    """Flask's JSON provider, with any failure to parse untrusted JSON a ValueError."""

    def loads(self, s: str | bytes, **kwargs):
        data = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
        if depth(data) > MAX_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
        try:
            return super().loads(s, **kwargs)
        except (RecursionError, MemoryError):
            raise ValueError("JSON that cannot be parsed") from None


def _check_body() -> None:
    if not request.is_json:
        return
    data = request.get_data(cache=True)  # cached: webargs reads the same bytes
    if not data:
        return  # no body: the schema says whether one is required
    try:
        current_app.json.loads(data)
    except ValueError:
        abort(400, messages={"json": ["Invalid JSON body."]})


def init_app(app: Flask, blueprints: Iterable[Blueprint]) -> None:
    """Install the provider and the body limit; check JSON bodies of `blueprints`' requests (after
    the hooks they registered themselves, such as authentication)."""
    app.json = GuardedJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_ADMIN_BYTES
    for blueprint in blueprints:
        app.before_request_funcs.setdefault(blueprint.name, []).append(_check_body)
