"""Command-line tasks: `flask --app wsgi bootstrap`, `operator-token`, `audit-verify`,
`rotate-admin-key`, `retire-admin-key`, `rotation-run`.

Each command runs on an audit trail of its own (`audit.bound`, request id `cli:<command>`), so
the changes it makes through the services are recorded like the admin API's.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps

import click
from flask import Flask, current_app

from .services import audit, members, rotation, rotation_job
from .services.actor import COMMAND_LINE
from .services.errors import Invalid
from .store import audit_chain
from .vault.bootstrap import admin_client, bootstrap, operator_vault_token
from .vault.errors import VaultError


def on_trail(command: Callable) -> Callable:
    """Run a command with the audit trail bound (under `app.cli.command`: the app context is in)."""

    @wraps(command)
    def run(*args, **kwargs):
        name = click.get_current_context().info_name
        context = audit.Context(request_id=f"cli:{name}", user_agent="flask-cli")
        with audit.bound(current_app.extensions["jetpero.db"], context):
            return command(*args, **kwargs)

    return run


def register(app: Flask) -> None:
    def vault_admin():
        config = current_app.extensions["jetpero"].config
        token = os.environ.get("VAULT_TOKEN")
        if not token:
            raise click.ClickException("VAULT_TOKEN (an admin or root token) is required for this command.")
        return admin_client(config.VAULT_ADDR, token, config.VAULT_TIMEOUT)

    @app.cli.command("bootstrap")
    @click.option(
        "--approle-file", default=None, help="Where to write the app's credentials (default: VAULT_APPROLE_FILE)."
    )
    @on_trail
    def bootstrap_command(approle_file: str | None) -> None:
        """Set Vault up for JetPero (idempotent); needs VAULT_TOKEN with admin rights."""
        config = current_app.extensions["jetpero"].config
        for line in bootstrap(vault_admin(), approle_file or config.VAULT_APPROLE_FILE):
            click.echo(line)
        click.echo("bootstrap complete")

    @app.cli.command("operator-token")
    @click.option("--name", default="operator", help="Who the token is for (shown in audit fields).")
    @on_trail
    def operator_token_command(name: str) -> None:
        """Mint an operator admin token (every org); printed once on stdout."""
        state = current_app.extensions["jetpero"]
        try:
            click.echo(members.add_operator(state.vault, state.config, COMMAND_LINE, name=name)["token"])
        except VaultError as exc:
            click.echo(f"Vault refused or is unavailable ({type(exc).__name__}); is it bootstrapped?", err=True)
            sys.exit(1)
        except audit.AuditUnavailable:
            click.echo("The audit trail cannot be written (check JETPERO_DATABASE_URL); nothing was changed.", err=True)
            sys.exit(1)

    @app.cli.command("operator-vault-token")
    @click.option("--ttl", default="8h", help="Lifetime of the token (Vault duration).")
    @on_trail
    def operator_vault_token_command(ttl: str) -> None:
        """Mint a Vault token for the UI: browse every org and project, never decrypt (needs VAULT_TOKEN)."""
        click.echo(operator_vault_token(vault_admin(), ttl))

    @app.cli.command("audit-verify")
    @click.option("--org", default=None, help="Check only this org's chain (default: every chain).")
    def audit_verify_command(org: str | None) -> None:
        """Check the audit trail's hash chains; name the first broken record of each (exit 1 if any)."""
        engine = current_app.extensions["jetpero.db"]
        broken = 0
        for chain in [org] if org else audit_chain.chains(engine):
            result = audit.verify(engine, chain)
            click.echo(json.dumps(result))
            broken += not result["ok"]
        sys.exit(1 if broken else 0)

    def with_trail(fn):
        """Run `fn(state)` on the bound audit trail; Vault and audit failures as a message, exit 1."""
        state = current_app.extensions["jetpero"]
        try:
            with audit.bound(current_app.extensions["jetpero.db"]):
                return fn(state)
        except (VaultError, audit.AuditUnavailable) as exc:
            click.echo(f"Vault or the audit trail refused or is unavailable ({type(exc).__name__}).", err=True)
            sys.exit(1)

    @app.cli.command("rotate-admin-key")
    def rotate_admin_key_command() -> None:
        """A new version of the admin-token signing key; tokens signed before keep verifying."""
        click.echo(json.dumps(with_trail(lambda state: rotation.rotate_admin_key(state.vault, COMMAND_LINE))))

    @app.cli.command("retire-admin-key")
    @click.option("--min-version", type=int, required=True, help="Oldest version that still verifies.")
    def retire_admin_key_command(min_version: int) -> None:
        """Refuse admin tokens signed by versions below --min-version, on every worker."""
        try:
            result = with_trail(lambda state: rotation.retire_admin_key(state.vault, COMMAND_LINE, min_version))
        except Invalid as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(json.dumps(result))

    @app.cli.command("rotation-run")
    def rotation_run_command() -> None:
        """Run the rotation job now: key settings on every project, ciphertexts rewrapped."""
        ages, rewrapped = with_trail(lambda state: rotation_job.run_all(state.vault, state.config))
        click.echo(json.dumps({"providers": len(ages), "rewrapped": rewrapped}))
