"""Refusals of the domain: the request is understood but not allowed. Each message is written
for the caller (safe to show: names and ids, never a key or a token value); `app/errors.py`
maps each class to its HTTP status."""

from __future__ import annotations

from ..vault.errors import Conflict, NotFound


class Refused(Exception):
    """Base class: the operation was refused; `message` says why and names the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotAllowed(Refused):
    """The actor's role does not reach what they asked (403)."""


class Invalid(Refused):
    """The data is well-formed but breaks a rule of the domain (422); `field` names the input
    field it is about, when there is one."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class Missing(Refused, NotFound):
    """The thing asked for does not exist (404): `kind` is org, project, provider, token, member
    or operator; `name` its slug or id (None: not shown, as for a malformed id). Still a
    `NotFound` for callers that only care whether."""

    def __init__(self, kind: str, name: str | None = None):
        super().__init__(f"No {kind} '{name}' was found." if name else f"No {kind} with that id was found.")
        self.kind, self.name = kind, name


class Exists(Refused, Conflict):
    """The name is taken (409). Still a `Conflict` for callers that only care whether."""

    def __init__(self, kind: str, name: str):
        super().__init__(f"The {kind} '{name}' already exists; choose another name.")
        self.kind, self.name = kind, name


class HasProjects(Refused, Conflict):
    """An org is deleted only once it has no projects, unless asked to delete them too (409)."""

    def __init__(self, org: str, count: int):
        super().__init__(
            f"The org '{org}' still has {count} project(s). Delete them first, or delete the org with"
            " ?cascade=true to delete its projects too (their keys are destroyed)."
        )
        self.org = org
