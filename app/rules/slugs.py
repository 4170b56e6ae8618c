"""Names of orgs, projects and providers: safe as Vault namespace and path segments."""

from __future__ import annotations

import re

SLUG_PATTERN = r"[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?"
_SLUG = re.compile(SLUG_PATTERN)

# Names Vault uses for its own paths, plus the mounts JetPero keeps next to namespaces.
RESERVED = frozenset(
    {"root", "sys", "auth", "audit", "cubbyhole", "identity", "secret", "transit", "kv", "token", "default"}
)


def slug_error(value: str) -> str | None:
    """Why `value` is not a valid slug, or None when it is."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        return "use 1-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    if ".." in value:
        return "'..' is not allowed"
    if value in RESERVED or value.startswith("jetpero"):
        return f"'{value}' is reserved"
    return None


def is_slug(value: str) -> bool:
    return slug_error(value) is None
