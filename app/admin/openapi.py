"""What the OpenAPI document says about errors: the one error shape (with `request_id`) and,
for every operation, the error statuses it can answer with.

The statuses are added by an apispec plugin as each path is documented, from what every admin
operation shares (app/errors.py is the one table they come from): a token (401), a role (403),
Vault and the audit trail (503), names in the path (404), a JSON body (400, 415, 422) and
check-and-set writes (409). flask-smorest adds the 422 of query arguments itself.
"""

from __future__ import annotations

from apispec import BasePlugin
from flask_smorest import Api
from marshmallow import Schema, fields

ALWAYS = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 503: "SERVICE_UNAVAILABLE"}
WITH_PATH_NAMES = {404: "NOT_FOUND"}
WITH_BODY = {400: "BAD_REQUEST", 415: "UNSUPPORTED_MEDIA_TYPE", 422: "UNPROCESSABLE_ENTITY"}
CHANGES = {409: "CONFLICT"}  # a name taken, a concurrent edit, an org that still has projects


class Error(Schema):
    """The one error body (app/errors.py `error_response`)."""

    code = fields.Integer(required=True, metadata={"description": "The HTTP status."})
    status = fields.String(required=True, metadata={"description": "The status' name."})
    message = fields.String(required=True, metadata={"description": "What went wrong and how to fix it."})
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(),
        metadata={"description": 'On 400/422: the bad fields by location, e.g. `{"json": {"slug": ["..."]}}`.'},
    )
    request_id = fields.String(
        required=True, metadata={"description": "The request's id (also X-Request-Id): what the logs name it by."}
    )


class ErrorResponses(BasePlugin):
    """Adds each operation's error responses (references to flask-smorest's per-status ones)."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **_) -> None:
        for method, operation in (operations or {}).items():
            codes = dict(ALWAYS)
            if "{" in (path or ""):
                codes.update(WITH_PATH_NAMES)
            if "requestBody" in operation:
                codes.update(WITH_BODY)
            if method in ("post", "put", "patch", "delete"):
                codes.update(CHANGES)
            responses = operation.setdefault("responses", {})
            for code, name in codes.items():
                responses.setdefault(str(code), name)


class JetPeroApi(Api):
    ERROR_SCHEMA = Error


def make_api(app) -> Api:
    return JetPeroApi(app, spec_kwargs={"extra_plugins": [ErrorResponses()]})
