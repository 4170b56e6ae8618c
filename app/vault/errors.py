"""Errors of the Vault service layer: what went wrong, never where (no paths, no tokens)."""


class VaultError(Exception):
    """Base class: a Vault call did not do what was asked."""


class NotFound(VaultError):
    """The thing asked for does not exist."""


class Conflict(VaultError):
    """A check-and-set write lost a race, or the thing already exists."""


class Unavailable(VaultError):
    """Vault is unreachable, sealed, slower than its timeout, or answering 5xx."""


class PolicyDenied(VaultError):
    """Vault refused one of our own calls: our policy is wrong (a bug, not the caller's fault)."""


class InvalidRequest(VaultError):
    """Vault rejected the request's content."""
