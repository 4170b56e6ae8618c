"""Pure request/response rewriting for the proxy: URL, headers, key injection, scrubbing."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, unquote_plus, urlsplit

from werkzeug.http import is_hop_by_hop_header

# Where SDKs put their key; the project token is read from the first present and all are dropped.
TOKEN_HEADERS = ("x-jetpero-token", "authorization", "x-api-key", "x-goog-api-key", "api-key")

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
    }
)
# Never returned to the client: cookies and headers naming the key's account.
_DROP_RESPONSE = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "openai-organization",
        "openai-project",
        "anthropic-organization-id",
        "x-organization-id",
        "transfer-encoding",
    }
)
_PCHAR = "!$&'()*+,;=:@-._~"
_BAD_PATH = re.compile(r"[\x00-\x1f\x7f\\]")
_BAD_QUERY = re.compile(r"[\x00-\x20\x7f#]")
_MASKED = re.compile(rb"[A-Za-z0-9_.\-]*\*{3,}[A-Za-z0-9_.\-]*")


class BadPath(ValueError):
    """The client's path cannot be forwarded safely."""


def token_from(headers) -> str | None:
    """The project token, from wherever the caller's SDK put its key."""
    for name in TOKEN_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        if name == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
        return value.strip() or None
    return None


def upstream_url(base_url: str, path: str, query: bytes, drop_param: str | None = None) -> str:
    """Stored base URL + the client's path, normalised; the host is never the client's to pick."""
    if _BAD_PATH.search(path):
        raise BadPath("control characters or backslash in path")
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise BadPath("dot segments in path")
    encoded = "/".join(quote(segment, safe=_PCHAR) for segment in segments)
    if path.endswith("/") and encoded:
        encoded += "/"
    url = f"{base_url.rstrip('/')}/{encoded}"
    if query:
        text = query.decode("latin-1")
        if _BAD_QUERY.search(text):
            raise BadPath("invalid query string")
        if drop_param:
            text = "&".join(p for p in text.split("&") if unquote_plus(p.split("=", 1)[0]) != drop_param)
        if text:
            url = f"{url}?{text}"
    base, final = urlsplit(base_url), urlsplit(url)
    if (final.scheme, final.netloc) != (base.scheme, base.netloc) or not final.path.startswith(base.path.rstrip("/")):
        raise BadPath("path escapes the base URL")
    return url


def request_headers(incoming, *, extra_drop: str | None) -> dict[str, str]:
    """The client's headers minus everything that must not reach the provider."""
    named = {h.strip().lower() for h in incoming.get("Connection", "").split(",") if h.strip()}
    out = {}
    for name, value in incoming.items():
        lower = name.lower()
        if (
            lower in _DROP_REQUEST
            or lower in named
            or lower == extra_drop
            or lower.startswith(("x-forwarded-", "x-jetpero-"))
            or is_hop_by_hop_header(lower)
        ):
            continue
        out[name] = value
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
    out = []
    for name, value in upstream_headers.items():
        lower = name.lower()
        if lower in _DROP_RESPONSE or is_hop_by_hop_header(lower) or lower.startswith("access-control-"):
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
