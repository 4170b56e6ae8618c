"""Namespaces: one per org (`<org>`) and one per project (`<org>/<project>`)."""

from __future__ import annotations

import time

import hvac
from hvac.exceptions import InvalidPath

from .connection import Vault
from .errors import Conflict, NotFound, VaultError

DELETE_WAIT = 15.0  # seconds Vault gets to finish deleting a namespace


def create(client: hvac.Client, name: str, metadata: dict[str, str]) -> None:
    """Create child namespace `name` of the client's namespace, with custom metadata."""
    client.adapter.post(f"/v1/sys/namespaces/{name}", json={"custom_metadata": metadata})


def children(client: hvac.Client) -> list[str]:
    """Names of the client namespace's direct children."""
    try:
        response = client.adapter.list("/v1/sys/namespaces")
    except InvalidPath:
        return []
    return [key.rstrip("/") for key in response["data"]["keys"]]


def delete(client: hvac.Client, name: str) -> None:
    """Delete a child namespace and all it holds (Vault finishes this asynchronously)."""
    client.adapter.delete(f"/v1/sys/namespaces/{name}")


def delete_and_wait(vault: Vault, parent: str | None, name: str) -> None:
    """Delete child `name` of `parent` and wait until Vault has really removed it (each
    attempt is its own call, so a token that expires meanwhile is renewed)."""
    deadline = time.monotonic() + DELETE_WAIT
    while True:
        try:
            vault.app(lambda c: delete(c, name), namespace=parent)
        except NotFound:
            return
        except VaultError:
            if time.monotonic() > deadline:
                raise
        if name not in vault.app(children, namespace=parent):
            return
        if time.monotonic() > deadline:
            raise Conflict()
        time.sleep(0.1)
