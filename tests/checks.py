"""Shared checks for the control-plane tests: leak-free responses and the one error shape.

`CheckedApi` is `helpers.Api` with one addition: every response it receives is checked for
things no response may ever hold (a provider key sent earlier in the session, the app's Vault
tokens, a Vault path, a traceback). The conftest `api` fixture is one, so the `org`, `project`
and `provider` fixtures go through the same check.
"""

from __future__ import annotations

import hvac.exceptions

from tests.helpers import Api
from tools.procs import free_port, port_in_use

# Vault paths and mounts, transit ciphertext, Python tracebacks.
FORBIDDEN = (
    b"Traceback",
    b'File "',
    b"jetpero-kv",
    b"jetpero-transit",
    b"sys/",
    b"kv/data",
    b"transit/",
    b"vault:v1:",
)

SENT_KEYS: set[str] = set()  # every api_key any CheckedApi sent in this session
SENT_TOKENS: set[str] = set()  # every admin or project token value a CheckedApi used or was given


def _secret_parts(key: str) -> list[bytes]:
    """What of a key must never be shown: all of it but the hint (last 4 of a long key)."""
    if len(key) >= 16:
        return [key[:-4].encode()]
    if len(key) >= 8:
        return [key.encode()]
    return []


def vault_tokens(app) -> list[str]:
    """The Vault tokens the app's worker holds right now (its own and project-scoped)."""
    vault = app.extensions["jetpero"].vault
    found = [vault._app_token[0]] if vault._app_token else []
    return found + [token for token, _ in vault._project_tokens.values()]


def assert_clean(response, app=None, *, extra: tuple[str, ...] = ()) -> None:
    """No key, Vault token, Vault path or traceback in the body or headers."""
    raw = response.get_data() + b"\n".join(f"{k}: {v}".encode() for k, v in response.headers.items())
    for marker in FORBIDDEN:
        assert marker not in raw, f"{marker!r} in a {response.status_code} response"
    for key in (*SENT_KEYS, *extra):
        for part in _secret_parts(key):
            assert part not in raw, f"a provider key in a {response.status_code} response"
    for token in vault_tokens(app) if app is not None else ():
        assert token.encode() not in raw, "a Vault token in a response"


class CheckedApi(Api):
    def call(self, method: str, path: str, **kwargs):
        body = kwargs.get("json")
        if isinstance(body, dict) and isinstance(body.get("api_key"), str):
            SENT_KEYS.add(body["api_key"])
        SENT_TOKENS.add(self.token)
        response = super().call(method, path, **kwargs)
        if kwargs.get("buffered", True):  # an unbuffered stream is the caller's to read (and check)
            assert_clean(response, self.client.application)
            body = response.get_json(silent=True)
            if isinstance(body, dict) and isinstance(body.get("token"), str):
                SENT_TOKENS.add(body["token"])
        return response


def assert_nothing_stored(engine) -> None:
    """No table row holds a provider key or a token value (or its signature) this session used."""
    from sqlalchemy import MetaData

    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        dump = "\n".join(str(row) for table in tables.sorted_tables for row in conn.execute(table.select()))
    assert dump, "the database holds no rows: nothing was checked"
    for key in SENT_KEYS:
        for part in _secret_parts(key):
            assert part.decode() not in dump, "a provider key in a database row"
    for token in SENT_TOKENS:
        assert token not in dump and token.rsplit(".", 1)[-1] not in dump, "a token value in a database row"


def assert_error(response, status: int, field: str | None = None) -> dict:
    """The one error shape, with `field` named (in `errors` for schema errors, else the message)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert body["code"] == status
    assert isinstance(body["status"], str) and body["status"]
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    if status == 503:
        assert response.headers["Retry-After"].isdigit()
    if field is not None:
        named = any(field in fields for fields in body.get("errors", {}).values())
        assert named or body["message"].startswith(field), body
    return body


def namespaces(bao, parent: str | None = None) -> set[str]:
    """Children of a namespace as Vault (root) sees them."""
    try:
        keys = bao.root(parent).adapter.list("/v1/sys/namespaces")["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return set()
    return {key.rstrip("/") for key in keys}


def free_port_pair() -> int:
    """A free port whose successor (a persistent server's cluster port) is free too."""
    for _ in range(50):
        port = free_port()
        if port < 65534 and not port_in_use(port + 1):
            return port
    raise RuntimeError("no free port pair")


def assert_clean_logs(records, *secrets: str) -> None:
    """No log record (message, arguments, extra fields, traceback) holds a secret, path or traceback."""
    for record in records:
        text = f"{record.getMessage()} {record.__dict__}".encode()
        assert not record.exc_info, f"a traceback logged by {record.name}"
        for marker in FORBIDDEN:
            assert marker not in text, f"{marker!r} logged by {record.name}"
        for key in (*SENT_KEYS, *secrets):
            for part in _secret_parts(key):
                assert part not in text, f"a key logged by {record.name}"
