"""The acting principal every service operation takes: who asks, never their token."""

from __future__ import annotations

from dataclasses import dataclass

from ..rules import roles
from .errors import NotAllowed

MEMBER = "member"
OPERATOR = "operator"
CLI = "cli"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Actor:
    """`kind` is member, operator or cli; `org` is a member's org (None for the others)."""

    kind: str
    id: str | None = None  # None only for `anonymous` (a refused call)
    role: str | None = None
    org: str | None = None

    @classmethod
    def from_admin_claims(cls, claims: dict) -> Actor:
        """The principal of a verified admin token (see `access.admin_token`)."""
        kind = OPERATOR if claims["role"] == roles.OPERATOR else MEMBER
        return cls(kind=kind, id=claims["member"], role=claims["role"], org=claims["org"])

    @property
    def subject(self) -> str:
        """How records name the actor (`created_by`), the `sub` of their admin token."""
        if self.kind == MEMBER:
            return f"member:{self.org}:{self.id}"
        if self.kind == OPERATOR:
            return f"operator:{self.id}"
        return self.kind

    @property
    def is_operator(self) -> bool:
        return self.role == roles.OPERATOR

    def require(self, minimum: str, org: str | None = None) -> None:
        """Refuse unless the role is at least `minimum` (in `org`, unless an operator)."""
        if self.is_operator:
            return
        if minimum == roles.OPERATOR or (org is not None and self.org != org) or not roles.at_least(self.role, minimum):
            raise NotAllowed("Your role does not allow this.")

    def require_grant(self, role: str, message: str) -> None:
        """Refuse with `message` when `role` is above the actor's own."""
        if not roles.can_grant(self.role, role):
            raise NotAllowed(message)


COMMAND_LINE = Actor(kind=CLI, id=CLI, role=roles.OPERATOR)  # `flask` commands run with Vault admin rights
