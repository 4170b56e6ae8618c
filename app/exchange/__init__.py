"""The public exchange: identity providers' JWTs and project tokens for end-user tokens."""

from __future__ import annotations

from .exchanger import EXTENSION, Exchanger
from .views import bp

__all__ = ["EXTENSION", "Exchanger", "bp"]
