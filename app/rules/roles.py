"""Admin roles and their ranks: the one place that says who may do what to whom."""

from __future__ import annotations

MEMBER_ROLES = ("viewer", "developer", "admin", "owner")  # an org member's, ascending rights
OPERATOR = "operator"  # above every member role, in every org
RANK = {role: rank for rank, role in enumerate((*MEMBER_ROLES, OPERATOR), start=1)}


def at_least(role: str, minimum: str) -> bool:
    """Whether `role` has every right `minimum` has."""
    return RANK[role] >= RANK[minimum]


def can_grant(role: str, granted: str) -> bool:
    """Nobody grants (or takes away) a role above their own."""
    return at_least(role, granted)
