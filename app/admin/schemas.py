"""Request and response shapes of the admin API (marshmallow; the only input validation)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from ..rules.providers import AUTH_TYPES, TEMPLATES, key_error
from ..rules.roles import MEMBER_ROLES
from ..rules.slugs import RESERVED, SLUG_PATTERN, slug_error
from ..rules.tokens import ENVIRONMENTS

_NAME = validate.Length(min=1, max=100)
_HEADER_NAME = validate.Regexp(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$", error="not a valid header or parameter name")

# `rules.slugs` as one pattern, for the OpenAPI document (and so for generated clients): no '..',
# no reserved name, nothing starting with 'jetpero'. The server checks with `slug_error`.
SLUG_DOC = {
    "pattern": rf"^(?!.*\.\.)(?!jetpero)(?!(?:{'|'.join(sorted(RESERVED))})$){SLUG_PATTERN}$",
    "minLength": 1,
    "maxLength": 63,
}
# What `rules.providers.key_error` accepts: 1-4096 printable ASCII characters, no spaces.
API_KEY_DOC = {"pattern": "^[!-~]+$", "minLength": 1, "maxLength": 4096}
# scheme://host[:port], nothing more: what a browser sends as its Origin header.
_ORIGIN = validate.Regexp(
    r"^https?://[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"(?::[0-9]{1,5})?$",
    error="an origin is scheme://host[:port], nothing more (e.g. https://app.example.com)",
)


def _slug(value: str) -> None:
    error = slug_error(value)
    if error:
        raise ValidationError(error)


def _slug_field(**kwargs) -> fields.String:
    return fields.String(validate=_slug, metadata=SLUG_DOC, **kwargs)


class OrgCreate(Schema):
    slug = _slug_field(required=True)
    display_name = fields.String(validate=_NAME)


class Org(Schema):
    slug = fields.String()
    display_name = fields.String()
    created_at = fields.String()


class OrgDeleteArgs(Schema):
    cascade = fields.Boolean(load_default=False)


class MemberCreate(Schema):
    name = fields.String(required=True, validate=_NAME)
    role = fields.String(required=True, validate=validate.OneOf(MEMBER_ROLES))


class Member(Schema):
    id = fields.String()
    name = fields.String()
    role = fields.String()
    created_at = fields.String()
    created_by = fields.String()


class MemberCreated(Member):
    token = fields.String(metadata={"description": "Admin token; shown once."})
    expires_at = fields.Integer()


class ProjectCreate(Schema):
    slug = _slug_field(required=True)
    display_name = fields.String(validate=_NAME)
    allowed_origins = fields.List(fields.String(validate=_ORIGIN), load_default=list, validate=validate.Length(max=50))


class ProjectPatch(Schema):
    display_name = fields.String(validate=_NAME)
    allowed_origins = fields.List(fields.String(validate=_ORIGIN), validate=validate.Length(max=50))


class Project(Schema):
    org = fields.String()
    slug = fields.String()
    display_name = fields.String()
    allowed_origins = fields.List(fields.String())
    created_at = fields.String()
    updated_at = fields.String()


class ProviderPut(Schema):
    template = fields.String(required=True, validate=validate.OneOf(sorted(TEMPLATES)))
    api_key = fields.String(required=True, load_only=True, metadata={"description": "Write-only.", **API_KEY_DOC})
    base_url = fields.String(validate=validate.Length(max=2048))
    auth_type = fields.String(validate=validate.OneOf(AUTH_TYPES))
    auth_name = fields.String(validate=_HEADER_NAME)

    @validates("api_key")
    def _key(self, value: str, **_) -> None:
        error = key_error(value)
        if error:
            raise ValidationError(error)

    @validates_schema
    def _custom(self, data: dict, **_) -> None:
        if data.get("template") == "custom" and not data.get("base_url"):
            raise ValidationError("a custom provider needs a base_url", "base_url")
        if data.get("template") != "custom" and ("auth_type" in data or "auth_name" in data):
            raise ValidationError("only a custom provider chooses how its key is sent", "auth_type")
        if data.get("auth_type") in ("header", "query") and not data.get("auth_name"):
            raise ValidationError("name the header or query parameter", "auth_name")


class Provider(Schema):
    name = fields.String()
    template = fields.String()
    base_url = fields.String()
    auth_type = fields.String()
    auth_name = fields.String(allow_none=True)
    key_hint = fields.String(metadata={"description": "Last 4 characters of a long key, else empty."})
    version = fields.Integer(metadata={"description": "KV version: each PUT is one (the key's history)."})
    created_at = fields.String()
    updated_at = fields.String()
    rotate_every_days = fields.Integer(allow_none=True, metadata={"description": "Rotation policy (days)."})
    rotate_by = fields.String(allow_none=True, metadata={"description": "When the key should be replaced."})
    overdue = fields.Boolean()


class ProviderDelete(Schema):
    purge = fields.Boolean(load_default=False, metadata={"description": "Also destroy every kept version."})


class TokenCreate(Schema):
    name = fields.String(required=True, validate=_NAME)
    environment = fields.String(required=True, validate=validate.OneOf(ENVIRONMENTS))
    expires_in = fields.Integer(required=True, validate=validate.Range(min=60), metadata={"description": "Seconds."})
    scope = fields.List(_slug_field(), validate=validate.Length(min=1, max=50))
    allowed_origins = fields.List(fields.String(validate=_ORIGIN), validate=validate.Length(max=50))


class Token(Schema):
    id = fields.String()
    name = fields.String()
    environment = fields.String()
    scope = fields.List(fields.String(), metadata={"description": "Providers it may use; ['*']: all."})
    allowed_origins = fields.List(fields.String(), allow_none=True)
    created_at = fields.String()
    expires_at = fields.Integer()
    revoked_at = fields.String(allow_none=True)
    created_by = fields.String()
    retire_at = fields.Integer(allow_none=True, metadata={"description": "Rotated: refused from then on (epoch)."})


class TokenCreated(Token):
    token = fields.String(metadata={"description": "The project token; shown once."})


class Jwk(Schema):
    kty = fields.String()
    crv = fields.String()
    x = fields.String()
    kid = fields.String()
    alg = fields.String()
    use = fields.String()


class Jwks(Schema):
    keys = fields.List(fields.Nested(Jwk))
