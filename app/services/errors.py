"""Refusals of the domain: the request is understood but not allowed. Each message is written
for the caller (safe to show); `app/errors.py` maps each class to its HTTP status."""


class Refused(Exception):
    """Base class: the operation was refused; `message` says why and names the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotAllowed(Refused):
    """The actor's role does not reach what they asked (403)."""


class Invalid(Refused):
    """The data is well-formed but breaks a rule of the domain (422)."""
