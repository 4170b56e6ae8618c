"""The outgoing side of the proxy: one urllib3 pool per worker, guarded at connect time.

Every connection is checked after it is made: if the peer is a loopback, private,
link-local or otherwise non-global address (whatever the hostname said, so DNS tricks and
rebinding do not help) it is closed before a byte is sent, unless the config allows it.
Redirects are never followed, proxy environment variables are ignored (urllib3 reads none),
TLS is verified.
"""

from __future__ import annotations

import ipaddress

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError


class BlockedAddress(NewConnectionError):
    """The upstream resolved to an address that is not allowed."""


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
                raise BlockedAddress(self, "upstream address not allowed")
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
