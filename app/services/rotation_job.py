"""The periodic rotation job: on each run (one worker of one node per period, by lease) every
project gets its key settings (KV history length, transit auto-rotation) and its provider
ciphertexts rewrapped behind the newest encryption-key version; the key ages it read feed the
`jetpero_provider_key_age_seconds` gauge between runs (no Vault call per scrape)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from config import Config

from ..rules import rotation as due_rules
from ..store import leases
from ..vault import kv, transit
from ..vault.connection import Vault
from ..vault.errors import VaultError
from ..vault.layout import ENCRYPTION_KEY, ORGS, REGISTRY, TRANSIT, project_namespace
from . import audit, projects, provider_keys, rotation
from .actor import COMMAND_LINE
from .errors import Refused

log = logging.getLogger("jetpero.rotation")

Ages = dict[tuple[str, str, str], float]  # (org, project, provider) -> when its key was set (epoch)


def _orgs(vault: Vault) -> list[str]:
    return sorted(name for name in vault.app(lambda c: kv.keys(c, REGISTRY, ORGS)) if not name.endswith("/"))


def maintain(vault: Vault, config: Config, org: str, project: str, ages: Ages) -> list[str]:
    """One project: settings applied, current ciphertexts rewrapped (on the audit trail when there
    are any); returns the providers rewrapped, and records each key's age in `ages`."""
    rotation.apply_settings(vault, config, org, project)
    namespace = project_namespace(org, project)
    latest = vault.app(lambda c: transit.key_info(c, TRANSIT, ENCRYPTION_KEY), namespace=namespace)["latest_version"]
    rewrapped = rotation.behind(vault, org, project, latest)
    if rewrapped:
        with audit.changing(COMMAND_LINE, "encryption_key.rewrapped", audit.Target(org, project)):
            for name in rewrapped:
                rotation.rewrap_current(vault, org, project, name, latest)
    for name in provider_keys.names(vault, org, project):
        updated = provider_keys.show(vault, COMMAND_LINE, org, project, name).get("updated_at")
        if updated:
            ages[(org, project, name)] = due_rules.epoch(updated)
    return rewrapped


def run_all(vault: Vault, config: Config) -> tuple[Ages, int]:
    """Every project of every org; a project that fails is logged and retried next run."""
    ages: Ages = {}
    rewrapped = 0
    for org in _orgs(vault):
        for project in projects.slugs(vault, org):
            try:
                rewrapped += len(maintain(vault, config, org, project, ages))
            except (VaultError, Refused) as exc:
                log.warning("rotation job skipped a project: %s", type(exc).__name__)
    return ages, rewrapped


class RotationJob:
    """A worker tick hook (like `usage.RetentionJob`): a run every `JETPERO_ROTATION_INTERVAL`
    seconds in a thread of its own, by the lease holder; at every tick `report(ages)` gets the key
    ages last read, once it has run (so the gauge moves between runs)."""

    def __init__(self, engine: Engine, vault: Vault, config: Config, report: Callable[[Ages], None], *, first=30.0):
        self.engine, self.vault, self.config, self.report = engine, vault, config, report
        self.every = config.JETPERO_ROTATION_INTERVAL
        self.ages: Ages | None = None  # None until this worker has run the job (the lease holder reports)
        self._due = time.monotonic() + first

    def __call__(self) -> None:
        if self.ages is not None:
            self.report(self.ages)
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.every
        threading.Thread(target=self.run, name="rotation", daemon=True).start()

    def run(self) -> int | None:
        """One run if this worker holds the lease; the number of ciphertexts rewrapped."""
        holder = f"{socket.gethostname()}:{os.getpid()}"
        try:
            if not leases.acquire(self.engine, "rotation", holder, self.every):
                return None
            with audit.bound(self.engine):
                self.ages, rewrapped = run_all(self.vault, self.config)
        except (SQLAlchemyError, VaultError, Refused) as exc:
            log.warning("rotation job not run (%s): retried next period", type(exc).__name__)
            return None
        self.report(self.ages)
        if rewrapped:
            log.info("rotation job rewrapped", extra={"fields": {"rewrapped": rewrapped}})
        return rewrapped
