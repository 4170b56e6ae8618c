"""The outgoing side of the proxy, and the one place that knows urllib3: `Upstream`, one per worker.

It holds the pool, the timeouts and the silence sweep, and translates urllib3's errors once
into the domain's (`UpstreamBlocked`, `UpstreamUnreachable`, `UpstreamTimeout`, mapped to
HTTP in `app/errors.py`), as `Vault.run` does for hvac.

Every connection is checked after it is made: if the peer is a loopback, private,
link-local or otherwise non-global address (whatever the hostname said, so DNS tricks and
rebinding do not help) it is closed before a byte is sent, unless the config allows it.
Redirects are never followed, proxy environment variables are ignored (urllib3 reads none),
TLS is verified.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout

from .silence import Silences, Watch

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger("jetpero.proxy")

CHUNK = 65536  # the most read from the provider at once


class UpstreamError(Exception):
    """The provider could not be used for this call; the subclass says why."""


class UpstreamBlocked(UpstreamError):
    """The provider's address is loopback, private or otherwise not allowed."""


class UpstreamUnreachable(UpstreamError):
    """No connection, or the answer broke off before its head or error body was in."""


class UpstreamTimeout(UpstreamError):
    """The provider did not connect or answer within the timeouts."""


class AnswerCut(ConnectionResetError):
    """Raised from a relayed body cut short (deadline, silence, provider failure): the server then
    drops the connection instead of ending the body, and the client's SDK reports an incomplete
    answer rather than taking the part it got for all of it. An ECONNRESET: gunicorn (and
    werkzeug's server) drop the connection quietly, with no traceback in the log."""

    def __init__(self) -> None:
        super().__init__(errno.ECONNRESET, "the provider's answer was cut short")


class _Blocked(NewConnectionError):
    """Raised inside urllib3 at connect time; `Upstream.send` turns it into UpstreamBlocked."""


def _allowed(address: str, allow_private: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return allow_private or ip.is_global


def _guarded(base: type[HTTPConnection], allow_private: bool) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[misc, valid-type]
        def _new_conn(self):
            sock = super()._new_conn()
            if not _allowed(sock.getpeername()[0], allow_private):
                sock.close()
                raise _Blocked(self, "upstream address not allowed")
            return sock

    return Guarded


def pool_manager(*, allow_private: bool, ca_bundle: str = "", maxsize: int = 1000) -> urllib3.PoolManager:
    """A PoolManager whose every connection passes the address guard."""
    http_pool = type(
        "GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": _guarded(HTTPConnection, allow_private)}
    )
    https_pool = type(
        "GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": _guarded(HTTPSConnection, allow_private)}
    )
    manager = urllib3.PoolManager(
        num_pools=200,
        maxsize=maxsize,
        block=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=ca_bundle or certifi.where(),
        retries=False,
    )
    manager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}
    return manager


class Upstream:
    """One worker's way out to the providers: send a request, read an error body, relay a body."""

    def __init__(self, config) -> None:
        self.http = pool_manager(
            allow_private=config.JETPERO_ALLOW_PRIVATE_UPSTREAMS, ca_bundle=config.JETPERO_UPSTREAM_CA_BUNDLE
        )
        self.timeout = Timeout(
            connect=config.JETPERO_UPSTREAM_CONNECT_TIMEOUT,
            read=config.JETPERO_UPSTREAM_READ_TIMEOUT,
            total=config.JETPERO_UPSTREAM_DEADLINE,  # waiting for the answer counts too
        )
        self.deadline: float = config.JETPERO_UPSTREAM_DEADLINE  # seconds, the whole call
        self.silences = Silences(config.JETPERO_UPSTREAM_READ_TIMEOUT)  # relayed bodies' read timeout

    def stop(self) -> None:
        self.silences.stop()

    def send(self, method: str, url: str, *, body, headers: dict, chunked: bool) -> BaseHTTPResponse:
        """The provider's answer, head read, body not yet."""
        try:
            return self.http.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                chunked=chunked,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=self.timeout,
            )
        except _Blocked:
            raise UpstreamBlocked from None
        except NewConnectionError:  # a subclass of ConnectTimeoutError, but refused/unresolvable
            raise UpstreamUnreachable from None
        except (ConnectTimeoutError, ReadTimeoutError):
            raise UpstreamTimeout from None
        except (HTTPError, OSError):
            raise UpstreamUnreachable from None

    def error_body(self, answer: BaseHTTPResponse, limit: int) -> bytes:
        """An error answer's body, decoded, up to `limit` bytes (read whole, to be scrubbed)."""
        try:
            body = answer.read(limit, decode_content=True)
        except ReadTimeoutError:
            answer.close()
            raise UpstreamTimeout from None
        except (HTTPError, OSError):  # cut short or undecodable
            answer.close()
            raise UpstreamUnreachable from None
        answer.release_conn()
        return body

    def body(self, answer: BaseHTTPResponse, call: Call) -> Iterator[bytes]:
        """A success answer's body as it arrives, each chunk counted on `call` and handed to its
        observers; `call.outcome` says how it ended. Raises AnswerCut if it was cut short."""
        # The first read waits under the socket's read timeout. Most answers end with it (a sized
        # body read whole: the next read returns b"" without waiting); past it, the sweep of
        # `silences` times the waits, and the socket only when the deadline is nearer than the
        # read timeout.
        silences, observers = self.silences, call.observers
        deadline = call.sent + self.deadline
        outcome, watch = "gone", None  # "gone" unless the loop ends: the client closed the body
        try:
            while (left := deadline - (now := time.monotonic())) > 0:
                if left < silences.limit:
                    _limit_silence(answer, left)
                elif watch is not None:
                    watch.since = now
                chunk = answer.read1(CHUNK)
                if not chunk:
                    outcome = "complete"
                    break
                if watch is not None:
                    watch.since = None
                elif answer.length_remaining != 0:  # 0: the next read ends it without waiting
                    watch = _watch(answer, silences)
                call.bytes_out += len(chunk)
                for observe in observers:
                    observe(chunk)
                yield chunk
            else:
                outcome = "cut"
                log.warning("upstream answer cut at the deadline")
        except (HTTPError, OSError):
            outcome = "cut"
            if watch is None or not watch.cut:  # a cut is logged by the sweep
                log.warning("upstream stream ended early")
        finally:
            if watch is not None and silences.forget(watch) and outcome == "complete":
                outcome = "cut"
            call.outcome = outcome
            if outcome == "complete":
                answer.release_conn()
            else:
                answer.close()  # client went away, deadline, or upstream failure
        if outcome != "complete":  # not reached when the client went away (the generator was closed)
            raise AnswerCut


def _limit_silence(answer: BaseHTTPResponse, seconds: float) -> None:
    """The next read waits at most `seconds` (no socket once the whole body has been read)."""
    sock = getattr(answer.connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _watch(answer: BaseHTTPResponse, silences: Silences) -> Watch | None:
    sock = getattr(answer.connection, "sock", None)
    if sock is None:
        return None
    sock.settimeout(None)  # the sweep times the waits now
    return silences.watch(sock)
