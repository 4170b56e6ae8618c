"""Key rotation and history: provider-key versions, rotate and restore; token rotation with a
grace; the project's signing and encryption keys; the org's overdue keys."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from ..proxy.probe import verifier
from ..proxy.views import UPSTREAM
from ..services import provider_keys, rotation
from .auth import actor
from .context import config, vault
from .schemas import Provider, TokenCreated

blp = Blueprint(
    "rotation",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>",
    description="Key rotation and history.",
)
PROJECT = "/projects/<slug:project>"
_DAYS = validate.Range(min=1, max=3650)


class Confirm(Schema):
    """An empty JSON object: these POSTs take no input."""


class ProviderVersion(Schema):
    version = fields.Integer()
    created_at = fields.String(metadata={"description": "When KV stored this version."})
    created_by = fields.String(allow_none=True, metadata={"description": "Who stored it (admin-token subject)."})
    change = fields.String(metadata={"description": "set, rotated, restored, rewrapped or deleted."})
    key_hint = fields.String(allow_none=True)
    current = fields.Boolean()
    encryption_key_version = fields.Integer(allow_none=True)
    restorable = fields.Boolean(metadata={"description": "False once its encryption-key version is retired."})


class ProviderRotate(Schema):
    api_key = fields.String(required=True, load_only=True)
    verify = fields.Boolean(load_default=False, metadata={"description": "Check the key with the provider first."})
    rotate_every_days = fields.Integer(allow_none=True, validate=_DAYS)


class RotationPolicy(Schema):
    rotate_every_days = fields.Integer(required=True, allow_none=True, validate=_DAYS)


class TokenRotate(Schema):
    grace_seconds = fields.Integer(load_default=0, validate=validate.Range(min=0))


class TokenRotated(TokenCreated):
    replaces = fields.String(metadata={"description": "The id of the token this one replaces."})
    replaced_until = fields.Integer(metadata={"description": "When the old token stops working (epoch seconds)."})


class KeyStatus(Schema):
    latest_version = fields.Integer()
    min_version = fields.Integer(metadata={"description": "Oldest version that still verifies/decrypts."})
    auto_rotate_days = fields.Integer(metadata={"description": "Vault rotates the key by itself this often (0: off)."})
    versions = fields.List(fields.Integer())
    rewrapped = fields.List(fields.String())


class Retire(Schema):
    min_version = fields.Integer(required=True, validate=validate.Range(min=1))


class Rewrap(Schema):
    retire = fields.Boolean(load_default=True, metadata={"description": "Then refuse older versions for decryption."})


class Due(Schema):
    project = fields.String()
    provider = fields.String()
    rotate_by = fields.String()
    updated_at = fields.String()
    key_hint = fields.String()


@blp.route(f"{PROJECT}/providers/<slug:name>/versions")
@blp.response(200, ProviderVersion(many=True))
def provider_versions(org, project, name):
    """Every kept version of a provider's key (also after a delete, until a purge)."""
    return provider_keys.versions(vault(), actor(), org, project, name)


@blp.route(f"{PROJECT}/providers/<slug:name>/rotate", methods=["POST"])
@blp.arguments(ProviderRotate)
@blp.response(200, Provider)
def rotate_provider(data, org, project, name):
    """Replace the provider's key (settings kept); every worker uses it within the sync bound."""
    verify = verifier(current_app.extensions[UPSTREAM]) if data["verify"] else None
    return provider_keys.rotate(vault(), actor(), org, project, name, data, verify)


@blp.route(f"{PROJECT}/providers/<slug:name>/versions/<int:version>/restore", methods=["POST"])
@blp.arguments(Confirm)
@blp.response(200, Provider)
def restore_provider(_, org, project, name, version):
    """Make an old version current again, as a new version (history stays append-only)."""
    return provider_keys.restore(vault(), actor(), org, project, name, version)


@blp.route(f"{PROJECT}/providers/<slug:name>/rotation-policy", methods=["PUT"])
@blp.arguments(RotationPolicy)
@blp.response(200, Provider)
def provider_policy(data, org, project, name):
    """How many days a key may serve before it is overdue (null: no policy)."""
    return provider_keys.set_rotation_policy(vault(), actor(), org, project, name, data["rotate_every_days"])


@blp.route(f"{PROJECT}/tokens/<string:token_id>/rotate", methods=["POST"])
@blp.arguments(TokenRotate)
@blp.response(201, TokenRotated)
def rotate_token(data, org, project, token_id):
    """A replacement token (value shown once); the old one works until its grace ends."""
    return rotation.rotate_token(vault(), config(), actor(), org, project, token_id, data["grace_seconds"])


@blp.route(f"{PROJECT}/signing-key")
class SigningKey(MethodView):
    @blp.response(200, KeyStatus)
    def get(self, org, project):
        """The token-signing key's versions."""
        return rotation.signing_key(vault(), actor(), org, project)


@blp.route(f"{PROJECT}/signing-key/rotate", methods=["POST"])
@blp.arguments(Confirm)
@blp.response(200, KeyStatus)
def rotate_signing(_, org, project):
    """New tokens are signed by a new version; older tokens keep verifying."""
    return rotation.rotate_signing_key(vault(), actor(), org, project)


@blp.route(f"{PROJECT}/signing-key/retire", methods=["POST"])
@blp.arguments(Retire)
@blp.response(200, KeyStatus)
def retire_signing(data, org, project):
    """Tokens signed below `min_version` are refused on every worker within the sync bound."""
    return rotation.retire_signing_key(vault(), actor(), org, project, data["min_version"])


@blp.route(f"{PROJECT}/encryption-key")
class EncryptionKey(MethodView):
    @blp.response(200, KeyStatus)
    def get(self, org, project):
        """The provider-keys encryption key's versions."""
        return rotation.encryption_key(vault(), actor(), org, project)


@blp.route(f"{PROJECT}/encryption-key/rotate", methods=["POST"])
@blp.arguments(Confirm)
@blp.response(200, KeyStatus)
def rotate_encryption(_, org, project):
    """Step 1: a new encryption-key version (then rewrap)."""
    return rotation.rotate_encryption_key(vault(), actor(), org, project)


@blp.route(f"{PROJECT}/encryption-key/rewrap", methods=["POST"])
@blp.arguments(Rewrap)
@blp.response(200, KeyStatus)
def rewrap(data, org, project):
    """Steps 2-3: current ciphertexts to the newest version, then older versions retired (safe to re-run)."""
    return rotation.rewrap(vault(), actor(), org, project, retire=data["retire"])


@blp.route("/rotation-due")
@blp.response(200, Due(many=True))
def rotation_due(org):
    """Provider keys past their rotate-by date: only their owner can replace them."""
    return rotation.due(vault(), actor(), org)
