"""The change feed: one KV record every worker polls to learn of revocations and edits.

Each change is `{"seq": n, "kind": ..., **fields}`. Writers append with check-and-set (so
concurrent writers never lose an event); readers apply what is newer than what they saw. Only
the last `KEEP` events are kept: a reader further behind than that drops all its caches.
The events are stored as one JSON string: OpenBao refuses a request body holding more than
1000 JSON strings (its listener's `max_request_json_strings`), which a list of events passes
after ~110 of them.
"""

from __future__ import annotations

import json

from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import Conflict
from ..vault.layout import CHANGES, REGISTRY

KEEP = 500
_ATTEMPTS = 20


def read(vault: Vault) -> tuple[int, list[dict]]:
    """(latest seq, retained events), (0, []) before the first change."""
    data, _ = vault.app(lambda c: kv.read_or_empty(c, REGISTRY, CHANGES))
    return int(data.get("seq", 0)), _events(data)


def _events(data: dict) -> list[dict]:
    return json.loads(data.get("events", "[]"))


def publish(vault: Vault, kind: str, **fields: str) -> int:
    """Append one event; return its seq."""
    for _ in range(_ATTEMPTS):
        data, version = vault.app(lambda c: kv.read_or_empty(c, REGISTRY, CHANGES))
        seq = int(data.get("seq", 0)) + 1
        events = [*_events(data), {"seq": seq, "kind": kind, **fields}][-KEEP:]
        record = {"seq": seq, "events": json.dumps(events, separators=(",", ":"))}
        try:
            vault.app(lambda c, record=record, version=version: kv.write(c, REGISTRY, CHANGES, record, cas=version))
        except Conflict:
            continue
        if vault.on_change is not None:
            vault.on_change(events[-1])  # the worker that made the change applies it at once
        return seq
    raise Conflict()
