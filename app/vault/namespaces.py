"""Namespaces: one per org (`<org>`) and one per project (`<org>/<project>`)."""

from __future__ import annotations

import hvac
from hvac.exceptions import InvalidPath


def create(client: hvac.Client, name: str, metadata: dict[str, str]) -> None:
    """Create child namespace `name` of the client's namespace, with custom metadata."""
    client.adapter.post(f"/v1/sys/namespaces/{name}", json={"custom_metadata": metadata})


def read(client: hvac.Client, name: str) -> dict:
    return client.adapter.get(f"/v1/sys/namespaces/{name}")["data"]


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
