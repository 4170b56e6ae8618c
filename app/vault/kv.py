"""KV v2 records: JSON documents with check-and-set writes."""

from __future__ import annotations

import time

import hvac
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

from .errors import PolicyDenied, Unavailable

READY_WAIT = 5.0  # seconds a new mount gets to finish upgrading itself
_UPGRADING = "Upgrading from non-versioned to versioned data"


def read(client: hvac.Client, mount: str, path: str) -> tuple[dict, int]:
    """Return (data, version) of the latest version; NotFound when absent or deleted."""
    response = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount, raise_on_deleted_version=True)
    data = response["data"]
    return data["data"], int(data["metadata"]["version"])


def read_or_empty(client: hvac.Client, mount: str, path: str) -> tuple[dict, int]:
    """Like `read`, but ({}, 0) when the record does not exist (0 is the CAS for "create"), and
    ({}, latest version) when its latest version is deleted (history kept: the CAS to write again)."""
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=False
        )
    except InvalidPath:
        return {}, 0
    data = response["data"]
    return data["data"] or {}, int(data["metadata"]["version"])


def metadata(client: hvac.Client, mount: str, path: str) -> dict:
    """The record's metadata (versions, times; never its data); NotFound when it does not exist."""
    return client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]


def write(client: hvac.Client, mount: str, path: str, data: dict, *, cas: int) -> int:
    """Write a new version only if the current one is `cas` (0: must not exist yet)."""
    response = client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas, mount_point=mount)
    return int(response["data"]["version"])


def delete(client: hvac.Client, mount: str, path: str) -> None:
    """Remove the record and every version of it."""
    client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=mount)


def keys(client: hvac.Client, mount: str, path: str) -> list[str]:
    """Names under a folder, [] when there are none."""
    try:
        return list(client.secrets.kv.v2.list_secrets(path=path, mount_point=mount)["data"]["keys"])
    except InvalidPath:  # an empty folder is a 404 in Vault
        return []


def enable(client: hvac.Client, path: str, description: str) -> None:
    """Mount a KV v2 engine and return once it serves requests. A new mount first upgrades
    itself and meanwhile answers "invalid request" to everything (with raft storage about one
    mount in ten, for ~50 ms): wait for that, up to READY_WAIT (then Unavailable, a 503)."""
    client.sys.enable_secrets_engine(backend_type="kv", path=path, options={"version": "2"}, description=description)
    deadline, pause = time.monotonic() + READY_WAIT, 0.01
    while True:
        try:
            client.secrets.kv.v2.read_configuration(mount_point=path)
            return
        except Forbidden:  # our policy lacks the probe: a bug, never a retry of the whole (made) mount
            raise PolicyDenied() from None
        except InvalidRequest as exc:
            if _UPGRADING not in " ".join(exc.errors or [str(exc)]):
                raise
        if time.monotonic() > deadline:
            raise Unavailable()
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def history(client: hvac.Client, mount: str, path: str) -> tuple[int, dict[int, dict]]:
    """(current version, {version: {created_time, deletion_time, destroyed}}) of every version kept."""
    data = metadata(client, mount, path)
    return int(data["current_version"]), {int(v): meta for v, meta in data["versions"].items()}


def read_version(client: hvac.Client, mount: str, path: str, version: int) -> dict | None:
    """The data of one version, None when it is deleted or destroyed."""
    response = client.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point=mount, raise_on_deleted_version=False
    )
    return response["data"]["data"]


def soft_delete(client: hvac.Client, mount: str, path: str) -> None:
    """Delete the latest version only: reads see no record, the history stays (until purged)."""
    client.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point=mount)


def configure(client: hvac.Client, mount: str, *, max_versions: int) -> None:
    """The mount's settings: how many versions of each record it keeps, check-and-set on."""
    client.secrets.kv.v2.configure(max_versions=max_versions, mount_point=mount)
