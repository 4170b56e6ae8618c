"""Compact JWS tokens signed in Vault (transit Ed25519) and verified locally with joserfc.

Signing: the header and claims are encoded here, the signing input is signed by Vault
(the private key never leaves it) and the signature appended. Verification: strict header
(only `alg`, `kid`, `typ`; `alg` pinned to Ed25519), the public key chosen by `kid`, the
signature checked by joserfc with the algorithm pinned, then every claim. Every failure is
`InvalidToken`; its reason is for logs, never for the response.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

ALGORITHM = "Ed25519"
TYP = "JWT"
PROXY_AUDIENCE = "jetpero-proxy"
ADMIN_AUDIENCE = "jetpero-admin"
ENVIRONMENTS = ("development", "staging", "production")  # a project token's `env`
MAX_TOKEN_LENGTH = 4096
LEEWAY = 5  # seconds of clock skew tolerated on nbf/iat (never on exp)

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_JTI = re.compile(r"[A-Za-z0-9_-]{8,64}")
_HEADER_FIELDS = {"alg", "kid", "typ"}
# What parsing attacker input can raise besides the library's own errors: deep nesting in a
# segment's JSON raises RecursionError, a huge one MemoryError (none may become a 500).
PARSE_ERRORS = (ValueError, TypeError, AttributeError, UnicodeDecodeError, RecursionError, MemoryError)


class InvalidToken(Exception):
    """The token is not acceptable; `reason` is safe to log (it never holds the token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def new_jti() -> str:
    return uuid.uuid4().hex


def _b64json(value: dict) -> bytes:
    return urlsafe_b64encode(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def issue(*, kid: str, claims: dict, sign: Callable[[bytes], bytes]) -> str:
    """Encode and sign; `sign` returns the raw signature of the signing input."""
    header = {"alg": ALGORITHM, "kid": kid, "typ": TYP}
    signing_input = _b64json(header) + b"." + _b64json(claims)
    return (signing_input + b"." + urlsafe_b64encode(sign(signing_input))).decode("ascii")


def standard_claims(*, issuer: str, subject: str, audience: str, ttl: int, now: int | None = None) -> dict:
    now = int(time.time()) if now is None else now
    return {"iss": issuer, "sub": subject, "aud": audience, "jti": new_jti(), "iat": now, "nbf": now, "exp": now + ttl}


def unverified_header(token: str) -> dict:
    """Decode and check the header before any key is looked up."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidToken("size")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise InvalidToken("shape")
    try:
        header = json.loads(urlsafe_b64decode(parts[0].encode("ascii")))
    except PARSE_ERRORS:
        raise InvalidToken("header encoding") from None
    if not isinstance(header, dict) or set(header) - _HEADER_FIELDS:
        raise InvalidToken("header fields")
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("algorithm")
    if header.get("typ") != TYP:
        raise InvalidToken("typ")
    if not isinstance(header.get("kid"), str):
        raise InvalidToken("kid")
    return header


def okp_key(raw_public_key: bytes) -> OKPKey:
    return OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": urlsafe_b64encode(raw_public_key).decode()})


def public_jwk(kid: str, raw_public_key: bytes) -> dict:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": urlsafe_b64encode(raw_public_key).decode(),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


def _int_claim(claims: dict, name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken(f"claim {name}")
    return value


def verify(token: str, *, key: OKPKey, audience: str, issuer: str, now: float | None = None) -> dict:
    """Check the signature with `key` (Ed25519 only) and every registered claim; return claims."""
    try:
        payload = jws.deserialize_compact(token, key, algorithms=[ALGORITHM]).payload
        claims = json.loads(payload)
    except (JoseError, *PARSE_ERRORS):
        raise InvalidToken("signature") from None
    if not isinstance(claims, dict):
        raise InvalidToken("claims")
    now = time.time() if now is None else now
    if now >= _int_claim(claims, "exp"):
        raise InvalidToken("expired")
    if _int_claim(claims, "nbf") > now + LEEWAY or _int_claim(claims, "iat") > now + LEEWAY:
        raise InvalidToken("not yet valid")
    if claims.get("aud") != audience:  # a string, exactly ours: a list is refused too
        raise InvalidToken("audience")
    if claims.get("iss") != issuer:
        raise InvalidToken("issuer")
    if not isinstance(claims.get("sub"), str):
        raise InvalidToken("subject")
    if not isinstance(claims.get("jti"), str) or not _JTI.fullmatch(claims["jti"]):
        raise InvalidToken("jti")
    return claims
