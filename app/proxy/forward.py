"""Pure request/response rewriting for the proxy: URL, headers, key injection, scrubbing."""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from urllib.parse import quote, unquote_plus, urlsplit

# Where SDKs put their key; the project token is read from the first present and all are dropped.
TOKEN_HEADERS = ("x-jetpero-token", "authorization", "x-api-key", "x-goog-api-key", "api-key")
# RFC 9110 §7.6.1 connection options, plus the non-standard Proxy-Connection.
HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade"}
)  # fmt: skip

# Never forwarded upstream: credentials, cookies, billing/account selectors, client identity,
# method overrides (hop-by-hop headers and those `Connection` names are dropped as well).
_DROP_REQUEST = frozenset(
    {
        *TOKEN_HEADERS,
        "host",
        "cookie",
        "cookie2",
        "proxy-authorization",
        "openai-organization",
        "openai-project",
        "forwarded",
        "x-real-ip",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "origin",
        "referer",
        "content-length",
        "transfer-encoding",
        *HOP_BY_HOP,
    }
)
_DROP_PREFIXES = ("HTTP_X_FORWARDED_", "HTTP_X_JETPERO_")
# Never returned to the client: cookies and headers naming the key's account.
_DROP_RESPONSE = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "openai-organization",
        "openai-project",
        "anthropic-organization-id",
        "x-organization-id",
        *HOP_BY_HOP,
    }
)
_PCHAR = "!$&'()*+,;=:@-._~"
_BAD_PATH = re.compile(r"[\x00-\x1f\x7f\\]")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9!$&'()*+,;=:@._~/-]*")
_BAD_QUERY = re.compile(r"[\x00-\x20\x7f#]")
_MASKED = re.compile(rb"[A-Za-z0-9_.\-]*\*{3,}[A-Za-z0-9_.\-]*")


class BadPath(ValueError):
    """The client's path cannot be forwarded safely."""


def environ_key(header: str) -> str:
    """How a WSGI server names a request header: `X-Api-Key` -> `HTTP_X_API_KEY`."""
    return "HTTP_" + header.strip().upper().replace("-", "_")


_TOKEN_KEYS = tuple(environ_key(name) for name in TOKEN_HEADERS)
_DROP_KEYS = frozenset(environ_key(name) for name in _DROP_REQUEST)


def token_from(environ: dict) -> str | None:
    """The project token, from wherever the caller's SDK put its key."""
    for key in _TOKEN_KEYS:
        value = environ.get(key)
        if not value:
            continue
        if key == "HTTP_AUTHORIZATION":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
        return value.strip() or None
    return None


@lru_cache(maxsize=4096)
def _join(base_url: str, path: str) -> str:
    """Stored base URL + the client's path, normalised and checked (raises BadPath).

    Remembered per (base URL, path): an app calls the same few paths again and again. A bad
    path raises, and a raise is not remembered.
    """
    if _BAD_PATH.search(path):
        raise BadPath("control characters or backslash in path")
    segments = [segment for segment in path.split("/") if segment]
    if "." in segments or ".." in segments:
        raise BadPath("dot segments in path")
    if _PLAIN_PATH.fullmatch(path):  # nothing to percent-encode
        encoded = "/".join(segments)
    else:
        encoded = "/".join(quote(segment, safe=_PCHAR) for segment in segments)
    if path.endswith("/") and encoded:
        encoded += "/"
    url = f"{base_url.rstrip('/')}/{encoded}"
    base, final = urlsplit(base_url), urlsplit(url)
    if (final.scheme, final.netloc) != (base.scheme, base.netloc) or not final.path.startswith(base.path.rstrip("/")):
        raise BadPath("path escapes the base URL")
    return url


def upstream_url(base_url: str, path: str, query: bytes, drop_param: str | None = None) -> str:
    """Stored base URL + the client's path, normalised; the host is never the client's to pick.
    The query string is the client's, minus `drop_param` (where the key goes, if it goes there)."""
    url = _join(base_url, path)
    if query:
        text = query.decode("latin-1")
        if _BAD_QUERY.search(text):  # no '#' or whitespace: a query cannot end early or change the URL before it
            raise BadPath("invalid query string")
        if drop_param:
            text = "&".join(p for p in text.split("&") if unquote_plus(p.split("=", 1)[0]) != drop_param)
        if text:
            url = f"{url}?{text}"
    return url


_DROPPED = ""  # in _names: this environ key is not forwarded
_names: dict[str, str] = {}  # environ key -> outgoing header name, or _DROPPED
_NAMES_MAX = 4096  # header names are the client's to choose: remembered up to this many


def _name(key: str) -> str:
    """The outgoing name of an environ key (`HTTP_X_CUSTOM` -> `X-Custom`), or _DROPPED."""
    name = _names.get(key)
    if name is None:
        forwarded = key.startswith("HTTP_") and key not in _DROP_KEYS and not key.startswith(_DROP_PREFIXES)
        name = key[5:].replace("_", "-").title() if forwarded else _DROPPED
        if len(_names) < _NAMES_MAX:
            _names[key] = name
    return name


def request_headers(environ: dict, *, extra_drop: str | None) -> dict[str, str]:
    """The client's headers (read from the WSGI environ) minus everything that must not reach the provider."""
    out = {}
    if content_type := environ.get("CONTENT_TYPE"):
        out["Content-Type"] = content_type
    names = _names
    for key, value in environ.items():
        name = names.get(key)
        if name is None:
            name = _name(key)
        if name:
            out[name] = value
    named = environ.get("HTTP_CONNECTION")
    if named or extra_drop:  # headers the client's Connection names, and the one the key goes in
        for name in f"{named or ''},{extra_drop or ''}".split(","):
            if name.strip() and (outgoing := _name(environ_key(name))):
                out.pop(outgoing, None)
    return out


def inject(headers: dict[str, str], url: str, record: dict, key: str) -> str:
    """Put the real key where the template says; return the (possibly changed) URL."""
    kind, name = record["auth_type"], record.get("auth_name")
    if kind == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    elif kind == "header":
        headers[name] = key
    elif kind == "basic":
        pair = key if ":" in key else f"{key}:"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    elif kind == "query":
        url += ("&" if "?" in url else "?") + f"{quote(name, safe='')}={quote(key, safe='')}"
    return url


def response_headers(upstream_headers, *, scrubbed: bool) -> list[tuple[str, str]]:
    """The provider's headers minus hop-by-hop ones (those its `Connection` names included),
    cookies, account selectors and CORS headers (the proxy sets its own)."""
    drop = _DROP_RESPONSE
    if named := upstream_headers.get("Connection"):
        drop = drop | {name.strip().lower() for name in named.split(",")}
    out = []
    for name, value in upstream_headers.items():
        lower = name.lower()
        if lower in drop or lower.startswith("access-control-"):
            continue
        if scrubbed and lower in ("content-encoding", "content-length"):  # the body was decoded and changed
            continue
        out.append((name, value))
    return out


def is_event_stream(content_type: str | None) -> bool:
    """Whether a Content-Type is SSE (cheaper than parsing it with all its parameters)."""
    return bool(content_type) and content_type.partition(";")[0].strip().lower() == "text/event-stream"


def scrub(body: bytes, secrets: list[str]) -> bytes:
    """Remove the key, and any masked echo of it ("sk-ab****wxyz"), from an upstream body."""
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode(), b"[redacted]")
    return _MASKED.sub(b"[redacted]", body)
