"""When a provider key is due for rotation: pure date arithmetic on its record."""

from __future__ import annotations

import calendar
import time

DAY = 86400


def epoch(stamp: str) -> int:
    """Seconds since the epoch of a record's ISO 8601 UTC stamp (`2026-01-02T03:04:05Z`)."""
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def due(data: dict, at: float | None = None) -> dict:
    """`rotate_by` (when the key set at `updated_at` should be replaced, None without a policy)
    and `overdue` for a provider record with an optional `rotate_every_days`."""
    days, changed = data.get("rotate_every_days"), data.get("updated_at")
    if not days or not changed:
        return {"rotate_by": None, "overdue": False}
    deadline = epoch(changed) + days * DAY
    return {"rotate_by": iso(deadline), "overdue": (time.time() if at is None else at) >= deadline}
