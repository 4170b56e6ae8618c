"""Limit policies, IP allowlists, granular scopes and prices: security state, kept in the project's KV.

Three kinds of record, each its own (`app/vault/layout.py`):

- `policies/project` (admins): the project's limits, which are the defaults of its tokens and
  their ceiling, per-end-user and per-client-IP limits, an IP allowlist, and the completion
  tokens a request without `max_tokens` reserves against a budget;
- `policies/tokens/<id>` (developers): one token's own limits (only tighter ones take effect),
  its own IP allowlist (checked as well as the project's) and its scope (routes, models);
- `prices/<provider>` (admins): per-model prices, which cost budgets charge.

Every change is audited (`policy.set`, `prices.set`) and published on the change feed
(`policy-changed`), which evicts the workers' cached `Rules`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..rules.cidr import Allowlist, CidrError
from ..rules.policy import LimitSet, Policy, Price
from ..rules.scope import Scope, ScopeError
from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import NotFound
from ..vault.layout import KV, PRICES, PROJECT_POLICY, TOKEN_POLICIES, record
from . import audit, changes, project_tokens, provider_keys
from .actor import Actor
from .common import checked_id, now
from .errors import Invalid

MAX_PRICES = 200
_LIMIT_GROUPS = ("limits", "end_user_limits", "ip_limits")


@dataclass(frozen=True)
class Rules:
    """What the proxy enforces for one token: its policy, the allowlists that must all allow the
    client (named for the 403), its scope, and the completion tokens reserved without `max_tokens`."""

    policy: Policy = Policy()
    allowlists: tuple[tuple[str, Allowlist], ...] = ()
    scope: Scope = Scope()
    estimate_tokens: int | None = None


UNLIMITED = Rules()  # what `rules` returns for a token with nothing to enforce (the proxy checks `is`)


def _limits(data: dict, group: str) -> LimitSet:
    value = data.get(group) or {}
    if not isinstance(value, dict):
        raise Invalid(f"{group} must be an object of limits.")
    try:
        return LimitSet.parse(value)
    except ValueError as exc:
        raise Invalid(f"{group}: {exc}.") from None


def _allowlist(data: dict) -> Allowlist | None:
    entries = data.get("ip_allowlist")
    if entries is None:
        return None
    try:
        return Allowlist.parse(entries)
    except CidrError as exc:
        raise Invalid(f"ip_allowlist: {exc}.") from None


def _scope(data: dict) -> Scope:
    try:
        return Scope.parse(data.get("routes") or (), data.get("models") or ())
    except ScopeError as exc:
        raise Invalid(f"{'models' if 'model' in str(exc) else 'routes'}: {exc}.") from None


def _project_record(data: dict) -> dict:
    """The project policy as stored, once every field parses (Invalid names the first that does not)."""
    stored = {group: _limits(data, group).as_json() for group in _LIMIT_GROUPS}
    allowlist = _allowlist(data)
    stored["ip_allowlist"] = [str(network) for network in allowlist.networks] if allowlist else None
    estimate = data.get("estimate_tokens")
    if estimate is not None and (isinstance(estimate, bool) or not isinstance(estimate, int) or estimate < 1):
        raise Invalid("estimate_tokens must be a whole number of 1 or more (or null for the default).")
    stored["estimate_tokens"] = estimate
    return stored


def _token_record(data: dict) -> dict:
    allowlist, scope = _allowlist(data), _scope(data)
    return {
        "limits": _limits(data, "limits").as_json(),
        "ip_allowlist": [str(network) for network in allowlist.networks] if allowlist else None,
        "routes": [str(route) for route in scope.routes],
        "models": list(scope.models),
    }


def _read(vault: Vault, org: str, project: str, path: str) -> tuple[dict, int]:
    return vault.project(org, project, lambda c: kv.read_or_empty(c, KV, path))


def _write(vault: Vault, actor: Actor, org: str, project: str, path: str, stored: dict, event: dict) -> dict:
    stored = {**stored, "updated_at": now(), "updated_by": actor.subject}

    def write(client) -> None:
        _, version = kv.read_or_empty(client, KV, path)
        kv.write(client, KV, path, stored, cas=version)

    vault.project(org, project, write)
    changes.publish(vault, "policy-changed", org=org, project=project, **event)
    return stored


def _public_project(data: dict) -> dict:
    return {
        **{group: data.get(group) or {} for group in _LIMIT_GROUPS},
        "ip_allowlist": data.get("ip_allowlist"),
        "estimate_tokens": data.get("estimate_tokens"),
        "updated_at": data.get("updated_at"),
        "updated_by": data.get("updated_by"),
    }


def show_project(vault: Vault, actor: Actor, org: str, project: str) -> dict:
    actor.require("viewer", org)
    return _public_project(_read(vault, org, project, PROJECT_POLICY)[0])


def set_project(vault: Vault, actor: Actor, org: str, project: str, data: dict) -> dict:
    """Replace the project's policy (admins); an empty body removes every limit."""
    actor.require("admin", org)
    stored = _project_record(data)
    with audit.changing(actor, "policy.set", audit.Target(org, project, "project")):
        return _public_project(_write(vault, actor, org, project, PROJECT_POLICY, stored, {}))


def _public_token(token_id: str, data: dict, project_data: dict) -> dict:
    own = _limits(data, "limits")
    return {
        "token_id": token_id,
        "limits": own.as_json(),
        "ip_allowlist": data.get("ip_allowlist"),
        "routes": data.get("routes") or [],
        "models": data.get("models") or [],
        "effective_limits": own.within(_limits(project_data, "limits")).as_json(),
        "updated_at": data.get("updated_at"),
        "updated_by": data.get("updated_by"),
    }


def show_token(vault: Vault, actor: Actor, org: str, project: str, token_id: str) -> dict:
    actor.require("viewer", org)
    token_id = checked_id(token_id, project_tokens.ID_LENGTH)
    project_tokens.get(vault, org, project, token_id)  # NotFound for a token that does not exist
    path = record(TOKEN_POLICIES, token_id)
    return _public_token(token_id, _read(vault, org, project, path)[0], _read(vault, org, project, PROJECT_POLICY)[0])


def set_token(vault: Vault, actor: Actor, org: str, project: str, token_id: str, data: dict) -> dict:
    """Replace one token's own policy (developers). Never looser than the project's: its limits
    apply only where tighter, its allowlist is checked as well as the project's."""
    actor.require("developer", org)
    token_id = checked_id(token_id, project_tokens.ID_LENGTH)
    project_tokens.get(vault, org, project, token_id)
    stored = _token_record(data)
    with audit.changing(actor, "policy.set", audit.Target(org, project, token_id)):
        written = _write(vault, actor, org, project, record(TOKEN_POLICIES, token_id), stored, {"token": token_id})
    return _public_token(token_id, written, _read(vault, org, project, PROJECT_POLICY)[0])


def _parsed_prices(data: dict) -> dict[str, Price]:
    models = data.get("models")
    if not isinstance(models, dict):
        raise Invalid("models must be an object: model name or pattern -> {input_per_1k, output_per_1k}.")
    if len(models) > MAX_PRICES:
        raise Invalid(f"models holds at most {MAX_PRICES} prices: use patterns such as gpt-4o*.")
    prices = {}
    for model, price in models.items():
        try:
            Scope.parse(models=[model])
        except ScopeError as exc:
            raise Invalid(f"models: {exc}.") from None
        try:
            prices[model] = Price.parse(price)
        except ValueError as exc:
            raise Invalid(f"models.{model}: {exc}.") from None
    return prices


def _public_prices(provider: str, data: dict) -> dict:
    return {
        "provider": provider,
        "models": json.loads(data.get("models") or "{}"),
        "updated_at": data.get("updated_at"),
        "updated_by": data.get("updated_by"),
    }


def _known_provider(vault: Vault, org: str, project: str, provider: str) -> None:
    if provider_keys.unknown(vault, org, project, [provider]):
        raise NotFound()


def show_prices(vault: Vault, actor: Actor, org: str, project: str, provider: str) -> dict:
    actor.require("viewer", org)
    _known_provider(vault, org, project, provider)
    return _public_prices(provider, _read(vault, org, project, record(PRICES, provider))[0])


def set_prices(vault: Vault, actor: Actor, org: str, project: str, provider: str, data: dict) -> dict:
    """Replace a provider's per-model prices (admins); `*` is the price of any model not listed."""
    actor.require("admin", org)
    _known_provider(vault, org, project, provider)
    prices = _parsed_prices(data)
    models = {model: {k: str(v) for k, v in vars(price).items()} for model, price in prices.items()}
    stored = {"models": json.dumps(models, separators=(",", ":"))}  # one JSON string: OpenBao caps a body's strings
    with audit.changing(actor, "prices.set", audit.Target(org, project, provider)):
        written = _write(vault, actor, org, project, record(PRICES, provider), stored, {"provider": provider})
    return _public_prices(provider, written)


def rules(vault: Vault, org: str, project: str, token_id: str | None) -> Rules:
    """What the proxy enforces for `token_id` (None: a token with no record, an end user's; read from
    Vault, cached by the proxy per worker)."""
    project_data = _read(vault, org, project, PROJECT_POLICY)[0]
    token_data = _read(vault, org, project, record(TOKEN_POLICIES, token_id))[0] if token_id else {}
    policy = Policy.resolve(
        _limits(project_data, "limits"),
        _limits(token_data, "limits"),
        user=_limits(project_data, "end_user_limits"),
        ip=_limits(project_data, "ip_limits"),
    )
    allowlists = tuple(
        (whose, Allowlist.parse(data["ip_allowlist"]))
        for whose, data in (("project", project_data), ("token", token_data))
        if data.get("ip_allowlist")
    )
    scope = _scope(token_data)
    if policy.empty and not allowlists and not (scope.routes or scope.models):
        return UNLIMITED
    return Rules(policy, allowlists, scope, project_data.get("estimate_tokens"))


def prices(vault: Vault, org: str, project: str, provider: str) -> dict[str, Price]:
    """A provider's prices by model name or pattern ({} when none are set)."""
    data = _read(vault, org, project, record(PRICES, provider))[0]
    return {model: Price.parse(price) for model, price in json.loads(data.get("models") or "{}").items()}


def price_of(table: dict[str, Price], model: str | None) -> Price | None:
    """The model's price: its own entry, else the first pattern it matches, else `*`'s."""
    if model is not None:
        if (own := table.get(model)) is not None:
            return own
        for pattern, price in table.items():
            if pattern != "*" and fnmatchcase(model, pattern):
                return price
    return table.get("*")
