"""Small helpers the services share: timestamps, rollback steps, ids given by callers, and
namespaces made all or nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..vault import namespaces
from ..vault.connection import Vault
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
