"""One proxied call as it goes through the phases, and the concerns that take part in them.

The phases (`app/proxy/phases.py`): admit -> resolve -> forward -> relay -> settle. A concern
(limits, usage, budgets...) is a small object with a method per phase it cares about, each
optional (mitmproxy's addons):

    admit(call)  -> None            after the token, origin and scope checks; raise (e.g. an
                                    ApiError) to refuse the call
    relay(call)  -> observer | None when the provider's answer head is in (`call.status`,
                                    `call.answer`); the observer, `observer(chunk: bytes)`, is
                                    handed each chunk of the body as it is relayed (no buffering)
    settle(call) -> None            once for every call (CORS preflights aside), however it
                                    ended (`call.outcome`: refused, failed, complete, cut, gone),
                                    for every concern, its admit run or not: what one reserved
                                    in admit (kept in `call.notes`) it releases here

They are listed in one place, `concerns_for(config)`; adding one never edits the others or the
phases. On the hot path, a phase with no concern costs a loop over an empty tuple.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .usage import Usage


class Call:
    """What the phases know of one call. Set by admit: `token`, `claims`; by resolve: `record`,
    `key`; by forward: `sent`, `upstream_ms`, `bytes_in`, `answer`, `status`; by relay:
    `observers`, `bytes_out`, `outcome`; by settle: `ended`. Times are `time.monotonic()`
    seconds; `status` is the one the client gets (the provider's, or the error answer's).
    `token` and `key` are secrets: never logged, stored or put in an error."""

    __slots__ = (
        "answer",
        "bytes_in",
        "bytes_out",
        "claims",
        "ended",
        "environ",
        "key",
        "method",
        "notes",
        "observers",
        "origin",
        "outcome",
        "path",
        "provider",
        "record",
        "request",
        "sent",
        "started",
        "status",
        "token",
        "upstream_ms",
    )

    def __init__(self, request, provider: str, path: str) -> None:
        self.started = time.monotonic()
        self.request = request  # the Flask request
        self.environ: dict = request.environ
        self.method: str = request.method
        self.provider, self.path = provider, path
        self.origin: str | None = self.environ.get("HTTP_ORIGIN")
        self.token: str | None = None  # the project token presented
        self.claims: dict | None = None  # its verified claims (org, project, providers, origins...)
        self.record: dict | None = None  # the provider record (base URL, auth template)
        self.key: str | None = None  # the provider key
        self.sent: float | None = None  # when the request left for the provider
        self.upstream_ms: float | None = None  # the wait for the answer's head
        self.answer = None  # urllib3's response, once the head is in
        self.status: int | None = None  # the status the client is answered with
        self.bytes_in = 0  # request body bytes sent to the provider
        self.bytes_out = 0  # response body bytes relayed to the client
        self.outcome: str | None = None  # refused, failed, complete, cut, gone
        self.observers: tuple[Callable[[bytes], None], ...] = ()
        self.ended: float | None = None
        self.notes: dict = {}  # concerns' own per-call state, by concern


class Concerns:
    """The concerns in order, as one tuple of bound methods per phase."""

    def __init__(self, concerns: Iterable[object] = ()) -> None:
        self.all = tuple(concerns)
        self.admit = tuple(c.admit for c in self.all if hasattr(c, "admit"))
        self.relay = tuple(c.relay for c in self.all if hasattr(c, "relay"))
        self.settle = tuple(c.settle for c in self.all if hasattr(c, "settle"))


def concerns_for(config, usage_writer=None) -> Concerns:
    """The one list of the proxy's concerns (limits, usage and budgets plug in here)."""
    from .limits import LimitsConcern  # noqa: PLC0415 - limits imports this module

    usage = (Usage(usage_writer),) if usage_writer is not None and config.JETPERO_USAGE_LOG else ()
    return Concerns((*usage, LimitsConcern(config)))  # usage first: limits settle on its counts
