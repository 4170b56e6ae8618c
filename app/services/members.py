"""Admin principals: org members (in the org's KV) and operators (in JetPero's own KV)."""

from __future__ import annotations

import uuid

from . import changes, kv, orgs
from .connection import Vault

ROLES = ("viewer", "developer", "admin", "owner")  # ascending rights; `operator` is above all


def _public(member_id: str, data: dict) -> dict:
    return {"id": member_id, **{k: data.get(k) for k in ("name", "role", "created_at", "created_by")}}


def add(vault: Vault, org: str, *, name: str, role: str, created_by: str) -> dict:
    member_id = uuid.uuid4().hex[:16]
    data = {"name": name, "role": role, "created_at": orgs.now(), "created_by": created_by}
    vault.app(lambda c: kv.write(c, orgs.ORG_MOUNT, f"members/{member_id}", data, cas=0), namespace=org)
    return _public(member_id, data)


def get(vault: Vault, org: str, member_id: str) -> dict:
    data, _ = vault.app(lambda c: kv.read(c, orgs.ORG_MOUNT, f"members/{member_id}"), namespace=org)
    return _public(member_id, data)


def list_all(vault: Vault, org: str) -> list[dict]:
    orgs.get(vault, org)  # an unknown org is NotFound, not an empty list
    ids = vault.app(lambda c: kv.keys(c, orgs.ORG_MOUNT, "members"), namespace=org)
    return [get(vault, org, member_id) for member_id in sorted(ids)]


def remove(vault: Vault, org: str, member_id: str) -> None:
    get(vault, org, member_id)
    vault.app(lambda c: kv.delete(c, orgs.ORG_MOUNT, f"members/{member_id}"), namespace=org)
    changes.publish(vault, "member-removed", org=org, member=member_id)


def add_operator(vault: Vault, *, name: str) -> dict:
    operator_id = uuid.uuid4().hex[:16]
    data = {"name": name, "role": "operator", "created_at": orgs.now(), "created_by": "cli"}
    vault.app(lambda c: kv.write(c, orgs.REGISTRY, f"operators/{operator_id}", data, cas=0))
    return _public(operator_id, data)


def get_operator(vault: Vault, operator_id: str) -> dict:
    data, _ = vault.app(lambda c: kv.read(c, orgs.REGISTRY, f"operators/{operator_id}"))
    return _public(operator_id, data)
