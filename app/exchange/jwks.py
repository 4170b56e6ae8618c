"""Identity providers' key sets, fetched from their configured JWKS URLs: one per worker.

Fetched through the proxy's address guard (`pool_manager`: loopback and private peers are
refused unless the config allows them, redirects are not followed), bounded in size and time,
kept for `MAX_AGE`, and fetched again early on an unknown `kid` at most once per `REFETCH_AFTER`
per IdP, so a flood of tokens naming random `kid`s costs one fetch a minute and no Vault call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict

from urllib3.exceptions import HTTPError
from urllib3.util import Timeout

from ..proxy.upstream import pool_manager
from ..rules import idp_tokens

log = logging.getLogger("jetpero.exchange")

MAX_BYTES = 65536
MAX_AGE = 3600.0  # seconds a fetched key set is used before it is fetched again
REFETCH_AFTER = 60.0  # the least time between two fetches of one IdP's key set
MAX_SETS = 1000


class JwksUnavailable(Exception):
    """The identity provider's key set could not be fetched (and none is cached)."""


class KeySets:
    def __init__(self, config) -> None:
        self.http = pool_manager(
            allow_private=config.JETPERO_ALLOW_PRIVATE_UPSTREAMS, ca_bundle=config.JETPERO_UPSTREAM_CA_BUNDLE, maxsize=4
        )
        seconds = config.JETPERO_JWKS_TIMEOUT
        self.timeout = Timeout(connect=seconds, read=seconds, total=seconds)
        self._sets: dict[tuple, tuple[dict, float]] = {}  # IdP -> (keys by kid, when fetched)
        self._locks: defaultdict[tuple, threading.Lock] = defaultdict(threading.Lock)
        self.fetches = 0

    def keys(self, ident: tuple, url: str, *, unknown_kid: bool = False) -> dict:
        """The IdP's keys by `kid`; `unknown_kid`: the caller met a `kid` not in the last set."""
        entry = self._sets.get(ident)
        if entry is not None and not self._due(entry, unknown_kid):
            return entry[0]
        with self._locks[ident]:
            entry = self._sets.get(ident)  # fetched by another caller meanwhile?
            if entry is not None and not self._due(entry, unknown_kid):
                return entry[0]
            try:
                keys = self._fetch(url)
            except JwksUnavailable:
                if entry is None:
                    raise
                keys = entry[0]  # keep the last good set; try again after REFETCH_AFTER
            if len(self._sets) >= MAX_SETS:
                self._sets.clear()
            self._sets[ident] = (keys, time.monotonic())
            return keys

    @staticmethod
    def _due(entry: tuple[dict, float], unknown_kid: bool) -> bool:
        age = time.monotonic() - entry[1]
        return age >= MAX_AGE or (unknown_kid and age >= REFETCH_AFTER)

    def _fetch(self, url: str) -> dict:
        self.fetches += 1
        try:
            answer = self.http.request(
                "GET",
                url,
                headers={"Accept": "application/json"},
                redirect=False,
                retries=False,
                preload_content=False,
                timeout=self.timeout,
            )
            try:
                body = answer.read(MAX_BYTES + 1) if answer.status == 200 else b""
            finally:
                answer.release_conn()
        except (HTTPError, OSError) as exc:
            log.warning("JWKS fetch failed: %s", type(exc).__name__)
            raise JwksUnavailable from None
        if not body or len(body) > MAX_BYTES:
            log.warning("JWKS refused: status %s, %d bytes", answer.status, len(body))
            raise JwksUnavailable
        try:
            return idp_tokens.key_set(json.loads(body))
        except (ValueError, RecursionError, MemoryError):
            log.warning("JWKS refused: not a key set")
            raise JwksUnavailable from None
