"""Identity providers' JWTs (the exchange's input), verified without trusting their header.

Pure: the caller hands the IdP's settings and its key set (from its configured JWKS URL).
The algorithm is pinned to the IdP's configured set (RS256, ES256, EdDSA at most) and must fit
the key's type; the key is chosen by `kid` from that key set only: a token carrying `jwk`,
`jku`, `x5u`, `x5c` or `crit` is refused outright. `iss` and `aud` are required and exact,
`exp` is required and in the future, `nbf`/`iat` are not in the future (small leeway). Every
parse is bounded: a failure of any kind is `InvalidToken`, never another exception.
"""

from __future__ import annotations

import json
import re
import time
import warnings

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.util import urlsafe_b64decode

from .tokens import InvalidToken

ALGORITHMS = ("RS256", "ES256", "EdDSA")
MAX_TOKEN_LENGTH = 8192
MAX_JWKS_KEYS = 20
LEEWAY = 30  # seconds of clock skew tolerated on nbf/iat (never on exp)
MAX_USER_LENGTH = 255

_KEY_TYPES = {"RS256": (RSAKey, None), "ES256": (ECKey, "P-256"), "EdDSA": (OKPKey, "Ed25519")}
_REFUSED_HEADERS = {"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_KID = re.compile(r"[\x21-\x7e]{1,128}")

# joserfc warns on every EdDSA use (RFC 9864 names it `Ed25519`); IdPs still send `EdDSA`.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


class UnknownKey(InvalidToken):
    """The token names a `kid` the key set does not hold (the JWKS may be refetched, bounded)."""

    def __init__(self) -> None:
        super().__init__("unknown kid")


def _json(segment: str) -> dict:
    try:
        value = json.loads(urlsafe_b64decode(segment.encode("ascii")))
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        raise InvalidToken("encoding") from None
    if not isinstance(value, dict):
        raise InvalidToken("not an object")
    return value


def unverified(token: object) -> tuple[dict, dict]:
    """(header, claims), decoded but not verified: to find which IdP the token claims to be from."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidToken("size")
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise InvalidToken("shape")
    header = _json(parts[0])
    if _REFUSED_HEADERS & set(header):
        raise InvalidToken("header names a key or critical extensions")
    return header, _json(parts[1])


def key_set(document: object) -> dict[str | None, object]:
    """The usable public keys of a JWKS document by `kid` (RSA, EC P-256, OKP Ed25519; private
    parts, symmetric keys and keys for encryption are left out)."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS document")
    found: dict[str | None, object] = {}
    for data in keys[:MAX_JWKS_KEYS]:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig" or "d" in data:
            continue
        kid = data.get("kid")
        if kid is not None and not (isinstance(kid, str) and _KID.fullmatch(kid)):
            continue
        try:
            key = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}[data["kty"]].import_key(data)
        except (KeyError, TypeError, ValueError, JoseError):
            continue
        found[kid] = key
    return found


def _key_for(keys: dict, header: dict, alg: str) -> object:
    kid = header.get("kid")
    if kid is None and len(keys) == 1:
        key = next(iter(keys.values()))
    elif isinstance(kid, str) and kid in keys:
        key = keys[kid]
    else:
        raise UnknownKey()
    key_type, curve = _KEY_TYPES[alg]
    if not isinstance(key, key_type) or (curve and key.curve_name != curve):
        raise InvalidToken("key does not fit the algorithm")
    return key


def _int(claims: dict, name: str, *, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidToken(f"claim {name}")
    return int(value)


def _audience_ok(value: object, audience: str) -> bool:
    if isinstance(value, list):
        return bool(value) and all(item == audience for item in value)
    return value == audience


def verify(token: str, idp: dict, keys: dict, *, now: float | None = None) -> dict:
    """The verified claims of an IdP JWT. `idp` holds `issuer`, `audience`, `algorithms`,
    `user_claim`; `keys` is `key_set` of its JWKS. Raises UnknownKey when the `kid` is not in it."""
    header, _ = unverified(token)
    alg = header.get("alg")
    if alg not in idp["algorithms"] or alg not in ALGORITHMS:
        raise InvalidToken("algorithm")
    key = _key_for(keys, header, alg)
    try:
        claims = json.loads(jws.deserialize_compact(token, key, algorithms=[alg]).payload)
    except (JoseError, ValueError, TypeError, AttributeError, UnicodeDecodeError, RecursionError, MemoryError):
        raise InvalidToken("signature") from None
    if not isinstance(claims, dict):
        raise InvalidToken("claims")
    now = time.time() if now is None else now
    if now >= _int(claims, "exp", required=True):
        raise InvalidToken("expired")
    for name in ("nbf", "iat"):
        moment = _int(claims, name, required=False)
        if moment is not None and moment > now + LEEWAY:
            raise InvalidToken("not yet valid")
    if claims.get("iss") != idp["issuer"]:
        raise InvalidToken("issuer")
    if not _audience_ok(claims.get("aud"), idp["audience"]):
        raise InvalidToken("audience")
    user = claims.get(idp["user_claim"])
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_LENGTH or not user.isprintable():
        raise InvalidToken("user claim")
    return claims
