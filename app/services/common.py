"""Small helpers the services share: timestamps, rollback steps, ids given by callers,
namespaces made all or nothing, and pages of records."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..vault import namespaces
from ..vault.connection import Vault
from ..vault.errors import NotFound
from .errors import Exists, Missing

log = logging.getLogger("jetpero.services")


def now() -> str:
    """The current UTC time as stored in records (ISO 8601, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def quietly(fn: Callable[[], object]) -> None:
    """Best-effort rollback step; the error that caused the rollback is the one re-raised."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        log.warning("rollback step failed: %s", type(exc).__name__)


def checked_id(value: str, length: int, kind: str = "record") -> str:
    """A member or token id as a caller gave it: anything but `length` lowercase hex digits is
    Missing (never echoed: it may be a token pasted in the wrong place; never a Vault path)."""
    if len(value) != length or any(ch not in "0123456789abcdef" for ch in value):
        raise Missing(kind)
    return value


def new_namespace(vault: Vault, parent: str | None, name: str, kind: str, provision: Callable[[], None]) -> None:
    """Create namespace `name` under `parent`, then `provision()` it, all or nothing: one that
    exists already (made outside JetPero) is `Exists` and left alone; after any failure past
    its creation the namespace is deleted again."""
    if name in vault.app(namespaces.children, namespace=parent):
        raise Exists(kind, f"{parent}/{name}" if parent else name)
    vault.app(lambda c: namespaces.create(c, name, {"managed-by": "jetpero", "kind": kind}), namespace=parent)
    try:
        provision()
    except BaseException:
        quietly(lambda: namespaces.delete_and_wait(vault, parent, name))
        raise


PAGE_LIMIT = 100  # records per page unless the caller asks for another number
MAX_PAGE_LIMIT = 1000
READERS = 8  # records of one page read at the same time


@dataclass(frozen=True)
class Page:
    """Records in name order; `next` is the name to continue after (None: this page is the last)."""

    items: list[dict]
    next: str | None = None


def page(names: Iterable[str], read: Callable[[str], dict], *, after: str | None, limit: int) -> Page:
    """The records of the `limit` names that sort after `after` (from the first with None), each
    read by `read(name)`, READERS at a time: Vault calls in proportion to the page, not to all the
    names (a KV LIST gives the names alone, in one call). Folders (`name/`) are not records; one
    deleted since it was listed (NotFound) is left out."""
    ordered = sorted(name for name in names if not name.endswith("/"))
    start = 0 if after is None else bisect.bisect_right(ordered, after)
    chosen = ordered[start : start + max(1, min(limit, MAX_PAGE_LIMIT))]
    more = start + len(chosen) < len(ordered)
    return Page([item for item in read_each(read, chosen) if item is not None], chosen[-1] if more else None)


def read_each(read: Callable[[str], dict], names: list[str]) -> list[dict | None]:
    """`read(name)` of each name, READERS at a time, in order; None for one that is NotFound."""

    def one(name: str) -> dict | None:
        try:
            return read(name)
        except NotFound:
            return None

    if len(names) <= 1:
        return [one(name) for name in names]
    with ThreadPoolExecutor(max_workers=min(READERS, len(names)), thread_name_prefix="page") as pool:
        return list(pool.map(one, names))
