"""A local test identity provider: signs JWTs with test keys (RS256, ES256, EdDSA) and serves
its JWKS on 127.0.0.1, counting the fetches; and a listener that counts any connection (for
`jku`/`x5u` headers that must never be followed). Shared by the exchange tests."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from app.services import audit
from tests.helpers import Api

ALGORITHMS = ("RS256", "ES256", "EdDSA")
AUDIENCE = "jetpero-test-app"


def generate_key(alg: str):
    if alg == "RS256":
        return RSAKey.generate_key(2048)
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    return OKPKey.generate_key("Ed25519")


class TestIdp:
    """An identity provider on its own port: `/jwks` serves the public keys, `/token?sub=...`
    hands out a signed JWT (for the browser test), CORS open to any origin."""

    __test__ = False  # not a test class

    def __init__(self, issuer: str | None = None):
        self.keys = {alg: generate_key(alg) for alg in ALGORITHMS}
        self.jwks_hits = 0
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/jwks":
                    idp.jwks_hits += 1
                    body = json.dumps(idp.jwks()).encode()
                elif self.path.startswith("/token?sub="):
                    body = json.dumps({"id_token": idp.sign({"sub": self.path.split("=", 1)[1]})}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = issuer or f"{self.url}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwks(self) -> dict:
        return {"keys": [{**key.as_dict(private=False), "kid": alg, "use": "sig"} for alg, key in self.keys.items()]}

    def claims(self, **overrides) -> dict:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": "user-42", "iat": now, "nbf": now, "exp": now + 300}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict, alg: str = "RS256", **header) -> str:
        key = header.pop("key", self.keys[alg])
        full = {"alg": alg, "kid": alg, "typ": "JWT", **header}
        return jws.serialize_compact(full, json.dumps(self.claims(**claims)).encode(), key, algorithms=[alg])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Listener:
    """Accepts and counts connections on 127.0.0.1 (nothing should ever connect)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/keys"
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def trust(app, api: Api, project: str, idp: TestIdp, name: str = "test-idp", **body) -> dict:
    """PUT the IdP on `project` ("org/slug") through the admin API, with the audit trail bound."""
    org, slug = project.split("/")
    payload = {"issuer": idp.issuer, "jwks_url": f"{idp.url}/jwks", "audience": AUDIENCE, "algorithms": list(ALGORITHMS)}
    payload.update(body)
    with audit.bound(app.extensions["jetpero.db"]):
        return api.put(f"/orgs/{org}/projects/{slug}/identity-providers/{name}", json=payload)


def untrust(app, api: Api, project: str, name: str = "test-idp"):
    org, slug = project.split("/")
    with audit.bound(app.extensions["jetpero.db"]):
        return api.delete(f"/orgs/{org}/projects/{slug}/identity-providers/{name}")


class VaultCalls:
    """Counts the Vault calls a worker makes for requests while in the `with` block (on this
    thread: the test client's requests; the change-feed poller's own calls are not counted)."""

    def __init__(self, app):
        self.vault = app.extensions["jetpero"].vault
        self.count = 0
        self.seen: list[str] = []

    def __enter__(self) -> VaultCalls:
        self._previous = self.vault.observer

        thread = threading.get_ident()

        def observe(*args) -> None:
            if threading.get_ident() == thread:
                self.count += 1
                self.seen.append(args[0])
            if self._previous is not None:
                self._previous(*args)

        self.vault.observer = observe
        return self

    def __exit__(self, *exc) -> None:
        self.vault.observer = self._previous
