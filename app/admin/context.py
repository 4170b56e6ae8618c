"""What views hand to services: the worker's Vault connection and config."""

from __future__ import annotations

from flask import current_app

from config import Config

from ..vault.connection import Vault


def vault() -> Vault:
    return current_app.extensions["jetpero"].vault


def config() -> Config:
    return current_app.extensions["jetpero"].config
