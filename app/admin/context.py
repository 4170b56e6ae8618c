"""The current worker's state and Vault connection, for views."""

from __future__ import annotations

from flask import current_app

from ..state import Worker
from ..vault.connection import Vault


def worker() -> Worker:
    return current_app.extensions["jetpero"]


def vault() -> Vault:
    return worker().vault
