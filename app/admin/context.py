"""The current worker's state and Vault connection, for views."""

from __future__ import annotations

from flask import current_app

from ..errors import ApiError
from ..state import Worker
from ..vault.connection import Vault


def worker() -> Worker:
    return current_app.extensions["jetpero"]


def vault() -> Vault:
    return worker().vault


def hex_id(value: str, length: int) -> str:
    """A member or token id from a URL: anything but `length` lowercase hex digits is a 404."""
    if len(value) != length or any(ch not in "0123456789abcdef" for ch in value):
        raise ApiError(404, "Not found.")
    return value
