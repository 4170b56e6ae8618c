"""Granular scopes narrower than a provider: methods and upstream paths, models, a bounded body reader.

Path patterns are split on `/`: a segment `*` matches any one segment, a last segment `**`
matches the rest (one or more segments), anything else matches itself. Model patterns are
shell-style (`gpt-4o*`). An empty scope is the whole provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from json.decoder import scanstring

import orjson

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*"})
MAX_RULES = 100
MAX_BODY_DEFAULT = 1 << 20  # bytes of a JSON body read to find its model
_SEGMENT = re.compile(r"^[A-Za-z0-9._~:@!$&'()+,;=-]+$")
_MODEL = re.compile(r"^[A-Za-z0-9._:/@*?\[\]-]{1,200}$")


class ScopeError(ValueError):
    """A scope cannot be used as written; the message names the entry and the fix."""


class BodyUnreadable(ValueError):
    """The request body's model cannot be read within the limit, so the request is refused."""


class BodyTooLarge(BodyUnreadable):
    """The request body is longer than the limit (a 413 for the caller)."""


def _segments(path: str) -> list[str] | None:
    """The path's segments, or None when it is not a plain path (dot segments, escapes, empties)."""
    parts = path.strip("/").split("/") if isinstance(path, str) and len(path) <= 2048 else []
    if not parts or any(not _SEGMENT.match(part) or part in {".", ".."} for part in parts):
        return None
    return parts


@dataclass(frozen=True)
class Route:
    """`METHOD path-pattern`, e.g. `POST v1/chat/completions` or `* v1/**`."""

    method: str
    pattern: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Route:
        method, _, pattern = text.strip().partition(" ") if isinstance(text, str) else ("", "", "")
        method = method.upper()
        if method not in METHODS:
            raise ScopeError(f"{str(text)[:80]!r}: start with a method ({', '.join(sorted(METHODS))}) then a path")
        raw = pattern.strip().strip("/").split("/")
        wild = [part in {"*", "**"} for part in raw]
        plain = _segments("/".join(part for part, w in zip(raw, wild, strict=True) if not w) or "x")
        if plain is None or "" in raw or "**" in raw[:-1]:
            raise ScopeError(f"{text!r}: write a path like v1/chat/completions, v1/*/items or v1/** (no . or ..)")
        return cls(method, tuple(raw))

    def matches(self, method: str, parts: list[str]) -> bool:
        if self.method not in {"*", method.upper()}:
            return False
        if self.pattern[-1] == "**":
            head = self.pattern[:-1]
            return len(parts) > len(head) and all(p in {"*", s} for p, s in zip(head, parts, strict=False))
        return len(parts) == len(self.pattern) and all(p in {"*", s} for p, s in zip(self.pattern, parts, strict=True))

    def __str__(self) -> str:
        return f"{self.method} {'/'.join(self.pattern)}"


@dataclass(frozen=True)
class Scope:
    """Allowed routes and models; an empty tuple allows every one."""

    routes: tuple[Route, ...] = ()
    models: tuple[str, ...] = ()

    @classmethod
    def parse(cls, routes: Iterable[str] = (), models: Iterable[str] = ()) -> Scope:
        """Validate a scope as an admin writes it; raise ScopeError naming the first bad entry."""
        if isinstance(routes, str) or isinstance(models, str):
            raise ScopeError("routes and models are lists, not one string")
        parsed = tuple(Route.parse(text) for text in routes)
        allowed = tuple(models)
        for model in allowed:
            if not isinstance(model, str) or not _MODEL.match(model):
                raise ScopeError(f"{str(model)[:80]!r} is not a model name or pattern (like gpt-4o or gpt-4o*)")
        if len(parsed) > MAX_RULES or len(allowed) > MAX_RULES:
            raise ScopeError(f"a scope holds at most {MAX_RULES} routes and {MAX_RULES} models")
        return cls(parsed, allowed)

    def route_refusal(self, method: str, path: str) -> str | None:
        """None when `method path` is allowed, else the 403 message naming what is not."""
        parts = _segments(path)
        if parts is None:
            return "this token's scope cannot match that path: use a plain path (no . or .. segments, no escapes)"
        if not self.routes or any(route.matches(method, parts) for route in self.routes):
            return None
        allowed = ", ".join(str(route) for route in self.routes)
        return f"this token may not call {method.upper()} {'/'.join(parts)} (allowed: {allowed})"

    def model_refusal(self, model: str | None) -> str | None:
        """None when `model` is allowed, else the 403 message; a scope with models needs a model."""
        if not self.models:
            return None
        if model is None:
            return f"this token may only use the models {', '.join(self.models)}: the request names none"
        if any(fnmatchcase(model, pattern) for pattern in self.models):
            return None
        return f"this token may not use the model {model[:200]!r} (allowed: {', '.join(self.models)})"


@dataclass(frozen=True)
class BodyFields:
    """What admission reads from a JSON request body; `body` is every byte read (to forward as is)."""

    model: str | None
    max_tokens: int | None
    stream: bool
    body: bytes


def _no_constant(name: str) -> object:
    raise BodyUnreadable(f"the JSON body holds {name}, which is not JSON")


# Nested values are parsed by json's C scanner with no Python hook (a hook per object cost as
# much as the parse itself: 1 ms for a 32 KB conversation); only the top level is walked here.
_scan = json.JSONDecoder(parse_constant=_no_constant).scan_once
_space = re.compile(r"[ \t\n\r]*").match  # JSON's whitespace


_READ = ("model", "max_tokens", "max_completion_tokens", "stream")  # the fields admission reads
_QUOTED = tuple(f'"{name}"'.encode() for name in _READ)
# Past this size the byte scans that make orjson's parse safe cost more than it saves over the
# walk (timeit on this machine: 5 against 16 µs at 100 B, 17 against 21 at 1 KB, 240 against 146 at 32 KB).
_FAST_BODY = 4096


def _fields(body: bytes) -> dict[str, object]:
    """The body's top-level members: orjson's parse (strict JSON, NaN and Infinity refused) when it
    is small and plainly one object in which none of the fields read can be repeated (no `\\u` escape, each
    field's name at most once in the bytes); otherwise, and for every error's message, `_members`."""
    if len(body) <= _FAST_BODY and b"\\u" not in body and all(body.count(name) <= 1 for name in _QUOTED):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            return data
    return _members(body.decode("utf-8"))


def _members(text: str) -> dict[str, object]:
    """The top-level object's members, every value parsed whole (so the body is checked to be one
    valid JSON object, NaN and Infinity refused at any depth). A repeated top-level field that
    admission reads raises BodyUnreadable; anything that is not a JSON object raises ValueError."""
    members: dict[str, object] = {}
    i = _space(text, 0).end()
    if text[i : i + 1] != "{":
        json.loads(text, parse_constant=_no_constant)  # a ValueError if it is not JSON at all
        raise BodyUnreadable("the request body is not a JSON object")
    i = _space(text, i + 1).end()
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i : i + 1] != '"':
                raise ValueError("expected a key")
            key, i = scanstring(text, i + 1)
            i = _space(text, i).end()
            if text[i : i + 1] != ":":
                raise ValueError("expected a colon")
            try:
                value, i = _scan(text, _space(text, i + 1).end())
            except StopIteration:
                raise ValueError("expected a value") from None
            if key in members and key in _READ:
                raise BodyUnreadable("the JSON body repeats a key, so which value the provider reads is unclear")
            members[key] = value
            i = _space(text, i).end()
            end = text[i : i + 1]
            i = _space(text, i + 1).end()
            if end == "}":
                break
            if end != ",":
                raise ValueError("expected a comma")
    if _space(text, i).end() != len(text):
        raise ValueError("extra data after the object")
    return members


def read_body_fields(read: Callable[[int], bytes], limit: int = MAX_BODY_DEFAULT) -> BodyFields:
    """Read at most `limit` bytes through `read(n)` and parse `model`, `max_tokens`, `stream`.

    Raise BodyUnreadable (a 403/413 for the caller) when the body is longer, not UTF-8 JSON,
    not an object, too deep, or holds fields of the wrong type.
    """
    chunks, size = [], 0
    while size <= limit:
        chunk = read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise BodyTooLarge(f"the request body is over {limit} bytes, so its model cannot be checked")
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        data = _fields(body)
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        if isinstance(exc, BodyUnreadable):
            raise
        raise BodyUnreadable("the request body is not a JSON object that can be read") from None
    model = data.get("model")
    stream = data.get("stream", False)
    if model is not None and not isinstance(model, str):
        raise BodyUnreadable("the body's model is not a string")
    caps = [data[name] for name in ("max_tokens", "max_completion_tokens") if data.get(name) is not None]
    if any(isinstance(cap, bool) or not isinstance(cap, int) or cap < 0 for cap in caps):
        raise BodyUnreadable("the body's max_tokens is not a whole number of 0 or more")
    max_tokens = max(caps) if caps else None
    if not isinstance(stream, bool):
        raise BodyUnreadable("the body's stream is not true or false")
    return BodyFields(model, max_tokens, stream, body)
