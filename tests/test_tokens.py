"""Project tokens: the issuing API, the published keys, and every hostile token on the proxy.

Claim-level attacks are signed by the project's real transit key (through the root token the
tests hold) and reuse the jti of a live token, so each fails only because of what it changes;
`test_forged_control_is_accepted` proves the forging itself yields tokens the proxy accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from app.rules import tokens
from tests.checks import CheckedApi
from tests.helpers import (
    FAKE_KEY,
    Api,
    Project,
    Signer,
    assert_uniform_401,
    b64,
    b64json,
    bearer,
    create_project,
    forge,
    issue_token,
    parts,
    put_provider,
    unb64,
)
from tests.servers import Listener
from tests.upstream import FakeUpstream

KEY_B = "sk-fake-PROJECTB-1111111111111111-wxyz"
CHAT = "/proxy/openai/v1/chat/completions"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class World:
    api: Api
    client: object
    upstream: FakeUpstream
    a: Project
    b: Project
    token: str  # project A, scope all
    b_token: str
    sign_a: Signer
    sign_b: Signer

    @property
    def kid(self) -> str:
        return parts(self.token)[0]["kid"]

    def claims(self, **changes) -> dict:
        """The live token's claims with `changes` (a value of None removes the claim)."""
        claims = {**parts(self.token)[1], **changes}
        return {k: v for k, v in claims.items() if v is not None}

    def header(self, **changes) -> dict:
        header = {"alg": "Ed25519", "kid": self.kid, "typ": "JWT", **changes}
        return {k: v for k, v in header.items() if v is not None}

    def proxy(self, token: str, carrier: str = "authorization"):
        headers = bearer(token) if carrier == "authorization" else {carrier: token}
        return self.client.post(CHAT, json=BODY, headers=headers)

    def refused(self, token: str, carrier: str = "authorization") -> None:
        """A uniform 401, and the upstream received nothing."""
        before = len(self.upstream.requests)
        assert_uniform_401(self.proxy(token, carrier))
        assert len(self.upstream.requests) == before


@pytest.fixture(scope="module")
def world(app, operator_token, bao):
    client = app.test_client()
    api = CheckedApi(client, operator_token)
    upstream = FakeUpstream()
    a, b = create_project(api), create_project(api)
    put_provider(api, a, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    put_provider(api, b, "openai", template="openai", api_key=KEY_B, base_url=upstream.url)
    token = issue_token(api, a)["token"]
    b_token = issue_token(api, b)["token"]
    yield World(api, client, upstream, a, b, token, b_token, Signer(bao, a.namespace), Signer(bao, b.namespace))
    upstream.stop()


# --------------------------------------------------------------------------- issuing API


def test_issue_shows_value_once_and_never_again(world):
    api, a = world.api, world.a
    created = api.post(f"{a.path}/tokens", json={"name": "web", "environment": "production", "expires_in": 600})
    assert created.status_code == 201, created.json
    body = created.json
    value = body["token"]
    assert re.fullmatch("[0-9a-f]{32}", body["id"]), body["id"]
    assert body["name"] == "web" and body["environment"] == "production"
    assert body["scope"] == ["*"] and body["allowed_origins"] is None and body["revoked_at"] is None
    assert abs(body["expires_at"] - (time.time() + 600)) < 10
    secret_parts = [value.encode(), *(p.encode() for p in value.split("."))]

    listing = api.get(f"{a.path}/tokens")
    one = api.get(f"{a.path}/tokens/{body['id']}")
    for response in (listing, one):
        assert response.status_code == 200
        raw = response.get_data()
        assert not any(part in raw for part in secret_parts)
    assert body["id"] in [t["id"] for t in listing.json]
    assert "token" not in one.json and one.json["name"] == "web"
    assert all("token" not in t for t in listing.json)


def test_header_and_claims(world, config):
    header, claims, signature = parts(world.token)
    assert header == {"alg": "Ed25519", "kid": f"{world.a.org}/{world.a.slug}/1", "typ": "JWT"}
    assert set(claims) == {"iss", "sub", "aud", "jti", "iat", "nbf", "exp", "env", "scope"}
    assert claims["iss"] == config.JETPERO_ISSUER
    assert claims["sub"] == world.a.namespace
    assert claims["aud"] == "jetpero-proxy"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert claims["env"] == "development" and claims["scope"] == "*"
    assert len(signature) == 64
    ids = [t["id"] for t in world.api.get(f"{world.a.path}/tokens").json]
    assert claims["jti"] in ids


def test_jwks_publishes_keys_that_verify_tokens(world):
    jwks = world.api.get(f"{world.a.path}/jwks.json")
    assert jwks.status_code == 200
    keys = jwks.json["keys"]
    assert keys and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" and k["alg"] == "Ed25519" for k in keys)
    assert all("d" not in k for k in keys)  # public halves only
    (jwk,) = [k for k in keys if k["kid"] == world.kid]
    assert jwk["kid"] == f"{world.a.org}/{world.a.slug}/1"
    verified = jws.deserialize_compact(world.token, OKPKey.import_key(jwk), algorithms=["Ed25519"])
    assert json.loads(verified.payload)["sub"] == world.a.namespace
    # Project B's key does not verify project A's token.
    (other,) = world.api.get(f"{world.b.path}/jwks.json").json["keys"]
    with pytest.raises(JoseError):
        jws.deserialize_compact(world.token, OKPKey.import_key(other), algorithms=["Ed25519"])


@pytest.mark.parametrize("missing", ["name", "environment", "expires_in"])
def test_required_fields(world, missing):
    body = {"name": "n", "environment": "staging", "expires_in": 600}
    del body[missing]
    response = world.api.post(f"{world.a.path}/tokens", json=body)
    assert response.status_code == 422
    assert missing in json.dumps(response.json["errors"])


@pytest.mark.parametrize("environment", ["development", "staging", "production"])
def test_environments(world, environment):
    created = issue_token(world.api, world.a, environment=environment)
    assert created["environment"] == environment
    assert parts(created["token"])[1]["env"] == environment
    assert world.proxy(created["token"]).status_code == 200


@pytest.mark.parametrize("environment", ["prod", "test", "", "Production"])
def test_unknown_environment_is_422(world, environment):
    body = {"name": "n", "environment": environment, "expires_in": 600}
    response = world.api.post(f"{world.a.path}/tokens", json=body)
    assert response.status_code == 422 and "environment" in json.dumps(response.json["errors"])


def test_expiry_is_capped_by_config(world, config):
    cap = config.JETPERO_MAX_TOKEN_TTL
    at_cap = issue_token(world.api, world.a, expires_in=cap)
    claims = parts(at_cap["token"])[1]
    assert claims["exp"] - claims["iat"] == cap
    for too_long in (cap + 1, 10 * cap):
        response = world.api.post(
            f"{world.a.path}/tokens", json={"name": "n", "environment": "staging", "expires_in": too_long}
        )
        assert response.status_code == 422 and "expires_in" in response.json["message"]
    for bad in (0, -5, "soon", None):
        response = world.api.post(
            f"{world.a.path}/tokens", json={"name": "n", "environment": "staging", "expires_in": bad}
        )
        assert response.status_code == 422


def test_scope(world):
    api, a = world.api, world.a
    put_provider(api, a, "anthropic", template="anthropic", api_key=FAKE_KEY, base_url=world.upstream.url)
    scoped = issue_token(api, a, scope=["openai"])
    assert scoped["scope"] == ["openai"] and parts(scoped["token"])[1]["scope"] == "openai"
    both = issue_token(api, a, scope=["openai", "anthropic"])
    assert both["scope"] == ["anthropic", "openai"]
    for bad in (["openai", "gemini"], ["nope"], []):
        response = api.post(
            f"{a.path}/tokens", json={"name": "n", "environment": "staging", "expires_in": 600, "scope": bad}
        )
        assert response.status_code == 422, bad
        assert "scope" in json.dumps(response.json)
    # The scope is enforced: anthropic is outside the first token's scope.
    before = len(world.upstream.requests)
    response = world.client.post("/proxy/anthropic/v1/messages", json={}, headers=bearer(scoped["token"]))
    assert response.status_code == 403
    assert len(world.upstream.requests) == before
    assert world.proxy(scoped["token"]).status_code == 200


def test_allowed_origins_must_be_a_subset_of_the_projects(world):
    api, a = world.api, world.a
    ok = issue_token(api, a, allowed_origins=["https://app.example.com"])
    assert ok["allowed_origins"] == ["https://app.example.com"]
    for bad in (["https://evil.example"], ["https://app.example.com", "https://evil.example"]):
        body = {"name": "n", "environment": "staging", "expires_in": 600, "allowed_origins": bad}
        response = api.post(f"{a.path}/tokens", json=body)
        assert response.status_code == 422 and "allowed_origins" in response.json["message"]


def test_delete_revokes(world):
    api, a = world.api, world.a
    created = issue_token(api, a)
    assert world.proxy(created["token"]).status_code == 200  # now cached on this worker
    assert api.delete(f"{a.path}/tokens/{created['id']}").status_code == 204
    world.refused(created["token"])
    assert api.get(f"{a.path}/tokens/{created['id']}").json["revoked_at"]
    assert api.delete(f"{a.path}/tokens/{'0' * 32}").status_code == 404
    assert api.delete(f"{a.path}/tokens/not-an-id").status_code == 404


def test_issuing_needs_a_role_in_that_org(world):
    api, a, b = world.api, world.a, world.b
    viewer = api.post(f"/orgs/{a.org}/members", json={"name": "v", "role": "viewer"}).json["token"]
    developer = api.post(f"/orgs/{a.org}/members", json={"name": "d", "role": "developer"}).json["token"]
    body = {"name": "n", "environment": "staging", "expires_in": 600}
    assert api.as_(viewer).post(f"{a.path}/tokens", json=body).status_code == 403
    assert api.as_(developer).post(f"{a.path}/tokens", json=body).status_code == 201
    assert api.as_(developer).post(f"{b.path}/tokens", json=body).status_code == 403  # another org
    assert api.as_(developer).get(f"{b.path}/jwks.json").status_code == 403


# --------------------------------------------------------------------------- forging works


def test_forged_control_is_accepted(world):
    """The forging machinery makes tokens the proxy accepts: the attacks below test one thing each."""
    claims = world.claims(exp=world.claims()["exp"] - 1)
    forged = tokens.issue(kid=world.kid, claims=claims, sign=world.sign_a)
    assert forged != world.token
    assert world.proxy(forged).status_code == 200
    assert world.proxy(forge(world.header(), world.claims(exp=claims["exp"] - 1), world.sign_a)).status_code == 200


@pytest.mark.parametrize("carrier", ["authorization", "x-api-key", "x-goog-api-key", "x-jetpero-token", "api-key"])
def test_every_carrier_is_accepted_and_checked(world, carrier):
    assert world.proxy(world.token, carrier).status_code == 200
    tail = "AAA" if world.token[-3:] != "AAA" else "BAA"  # a signature that ends in AAA (1 in 16,384) stays changed
    world.refused(world.token[:-3] + tail, carrier)


# --------------------------------------------------------------------------- signature attacks


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none(world, alg):
    header = world.header(alg=alg)
    world.refused(forge(header, world.claims(), None))  # "h.p."
    real_signature = world.token.rsplit(".", 1)[1]
    world.refused(forge(header, world.claims(), None) + real_signature)
    world.refused(forge({"alg": alg, "typ": "JWT"}, world.claims(), None))


def test_stripped_or_truncated_signature(world):
    head, payload, signature = world.token.split(".")
    for bad in (
        f"{head}.{payload}.",
        f"{head}.{payload}",
        f"{head}.{payload}.{signature[:-4]}",
        f"{head}.{payload}.{signature[:43]}",
        f"{head}.{payload}.{b64(bytes(64))}",
        f"{head}.{payload}.{b64(bytes(b ^ 1 if i == 0 else b for i, b in enumerate(unb64(signature))))}",
        f"{head}.{payload}.{signature}{signature}",
    ):
        world.refused(bad)


def test_payload_edited_under_old_signature(world):
    head, _, signature = world.token.split(".")
    b_sub = world.b.namespace
    for changes in (
        {"scope": "anthropic openai"},
        {"exp": world.claims()["exp"] + 10**6},
        {"sub": b_sub},
        {"env": "production"},
    ):
        world.refused(f"{head}.{b64json(world.claims(**changes))}.{signature}")
    # Same claims, re-serialised differently (key order, spacing): still not the signed bytes.
    claims = world.claims()
    reordered = b64(json.dumps(dict(reversed(list(claims.items())))).encode())
    world.refused(f"{head}.{reordered}.{signature}")


def _public_key_forms(world) -> dict[str, bytes]:
    jwk = world.api.get(f"{world.a.path}/jwks.json").json["keys"][0]
    raw = unb64(jwk["x"])
    public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return {
        "raw": raw,
        "x": jwk["x"].encode(),
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(jwk).encode(),
        "jwk-sorted": json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode(),
    }


@pytest.mark.parametrize(
    "alg,digest", [("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)]
)
def test_hmac_keyed_with_our_public_key(world, alg, digest):
    for secret in _public_key_forms(world).values():
        token = forge(world.header(alg=alg), world.claims(), lambda m, s=secret: hmac.new(s, m, digest).digest())
        world.refused(token)


def test_resigned_with_other_algorithms(world):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def rs256(message: bytes) -> bytes:
        return rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    ec_key = ec.generate_private_key(ec.SECP256R1())

    def es256(message: bytes) -> bytes:
        r, s = decode_dss_signature(ec_key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    world.refused(forge(world.header(alg="RS256"), world.claims(), rs256))
    world.refused(forge(world.header(alg="ES256"), world.claims(), es256))
    # Our own key and a genuine Ed25519 signature, under another algorithm name.
    for alg in ("EdDSA", "ed25519", "ED25519", "Ed25519 ", "Ed448", ["Ed25519"]):
        world.refused(forge(world.header(alg=alg), world.claims(), world.sign_a))
    # An attacker's own Ed25519 key under the right name.
    attacker = ed25519.Ed25519PrivateKey.generate()
    world.refused(forge(world.header(), world.claims(), attacker.sign))


# --------------------------------------------------------------------------- header abuse


def test_embedded_jwk_jku_x5u_are_refused_without_fetching(world):
    attacker = ed25519.Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    listener = Listener()
    try:
        for extra in (
            {"jwk": jwk},
            {"jku": f"{listener.url}/jwks.json"},
            {"x5u": f"{listener.url}/cert.pem"},
            {"x5c": ["MIIB"]},
            {"jku": f"{listener.url}/jwks.json", "kid": "attacker"},
        ):
            header = world.header(**extra)
            world.refused(forge(header, world.claims(), attacker.sign))
            world.refused(forge(header, world.claims(), world.sign_a))  # even with our real signature
        world.refused(forge({"alg": "Ed25519", "typ": "JWT", "jwk": jwk}, world.claims(), attacker.sign))
        time.sleep(0.2)
        assert listener.connections == 0
    finally:
        listener.stop()


@pytest.mark.parametrize(
    "kid",
    [
        "../../sys/1",
        "{org}/../{slug}/1",
        "{org}/{slug}/../../1",
        "{org}/{slug}/1/../1",
        "..%2F..%2Fsys/1",
        "{org}/{slug}/1' OR '1'='1",
        "1 UNION SELECT key FROM keys--",
        "$(touch /tmp/jetpero-kid-pwned)",
        "`touch /tmp/jetpero-kid-pwned`",
        "{org}/{slug}/1; touch /tmp/jetpero-kid-pwned",
        "{org}/{slug}/1\x00",
        "{org}/{slug}/2",
        "{org}/{slug}/0",
        "{org}/{slug}/01",
        "{org}/{slug}",
        "admin/1",
        "",
        "x" * 5000,
        7,
        None,
        ["{org}/{slug}/1"],
        {"kid": "{org}/{slug}/1"},
    ],
)
def test_hostile_kid(world, kid):
    if isinstance(kid, str):
        kid = kid.format(org=world.a.org, slug=world.a.slug)
    header = {"alg": "Ed25519", "typ": "JWT"} if kid is None else world.header(kid=kid)
    if isinstance(kid, list | dict):
        header["kid"] = json.loads(json.dumps(kid).replace("{org}", world.a.org).replace("{slug}", world.a.slug))
    world.refused(forge(header, world.claims(), world.sign_a))
    assert not Path("/tmp/jetpero-kid-pwned").exists()


def test_another_projects_kid(world):
    b_kid = parts(world.b_token)[0]["kid"]
    # A's key, B's kid: the signature is checked with B's key and fails.
    world.refused(forge(world.header(kid=b_kid), world.claims(), world.sign_a))
    # B's key and B's kid, claiming to be A (with A's live jti): the subject must match the kid.
    world.refused(forge(world.header(kid=b_kid), world.claims(), world.sign_b))
    # B's key under A's kid.
    world.refused(forge(world.header(), world.claims(), world.sign_b))
    # B's own token is fine, and uses B's key upstream, never A's.
    assert world.proxy(world.b_token).status_code == 200
    assert world.upstream.requests[-1].header("authorization") == f"Bearer {KEY_B}"


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["x-jetpero"], "x-jetpero": True},
        {"crit": ["exp"]},
        {"crit": []},
        {"b64": False, "crit": ["b64"]},
        {"cty": "JWT"},
        {"zip": "DEF"},
        {"x-extra": 1},
    ],
)
def test_unknown_header_fields(world, extra):
    world.refused(forge(world.header(**extra), world.claims(), world.sign_a))


@pytest.mark.parametrize("typ", [None, "at+jwt", "JOSE", "jwt ", 1])
def test_typ_is_required(world, typ):
    world.refused(forge(world.header(typ=typ), world.claims(), world.sign_a))  # None: no typ at all


# --------------------------------------------------------------------------- claims (real key)


def _now() -> int:
    return int(time.time())


CLAIM_CASES = {
    "exp missing": lambda w: w.claims(exp=None),
    "exp == now": lambda w: w.claims(exp=_now()),
    "exp past": lambda w: w.claims(exp=_now() - 3600),
    "exp string": lambda w: w.claims(exp=str(_now() + 3600)),
    "exp float": lambda w: w.claims(exp=_now() + 3600.5),
    "exp bool": lambda w: w.claims(exp=True),
    "nbf future": lambda w: w.claims(nbf=_now() + 120),
    "nbf missing": lambda w: w.claims(nbf=None),
    "iat future": lambda w: w.claims(iat=_now() + 120),
    "iat missing": lambda w: w.claims(iat=None),
    "aud missing": lambda w: w.claims(aud=None),
    "aud admin": lambda w: w.claims(aud="jetpero-admin"),
    "aud other": lambda w: w.claims(aud="https://api.openai.com"),
    "aud two": lambda w: w.claims(aud=["jetpero-proxy", "jetpero-admin"]),
    "aud list of ours": lambda w: w.claims(aud=["jetpero-proxy"]),
    "iss missing": lambda w: w.claims(iss=None),
    "iss wrong": lambda w: w.claims(iss="evil"),
    "iss case": lambda w: w.claims(iss="JetPero"),
    "sub missing": lambda w: w.claims(sub=None),
    "sub other project": lambda w: w.claims(sub=w.b.namespace),
    "sub org only": lambda w: w.claims(sub=w.a.org),
    "jti missing": lambda w: w.claims(jti=None),
    "jti unknown": lambda w: w.claims(jti="0" * 32),
    "jti traversal": lambda w: w.claims(jti="../../providers/openai"),
    "jti other project": lambda w: w.claims(jti=parts(w.b_token)[1]["jti"]),
    "jti number": lambda w: w.claims(jti=12345678),
    "env missing": lambda w: w.claims(env=None),
    "env unknown": lambda w: w.claims(env="root"),
    "scope missing": lambda w: w.claims(scope=None),
    "scope list": lambda w: w.claims(scope=["*"]),
}


@pytest.mark.parametrize("case", sorted(CLAIM_CASES))
def test_claims_are_checked(world, case):
    claims = CLAIM_CASES[case](world)
    world.refused(tokens.issue(kid=world.kid, claims=claims, sign=world.sign_a))


def test_exp_equal_to_now_is_expired(world, config):
    """At the exact second of `exp` the token is dead (checked with a pinned clock)."""
    (jwk,) = world.api.get(f"{world.a.path}/jwks.json").json["keys"]
    checks = {"key": OKPKey.import_key(jwk), "audience": tokens.PROXY_AUDIENCE, "issuer": config.JETPERO_ISSUER}
    exp = world.claims()["exp"]
    assert tokens.verify(world.token, now=exp - 1, **checks)["exp"] == exp
    for now in (exp, exp + 0.001, exp + 1):
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(world.token, now=now, **checks)


def test_payload_that_is_not_a_claims_object(world):
    for payload in (b"[]", b"null", b"42", b'"x"', b"not json", b"\xff\xfe", b'{"exp": 1e999}'):
        world.refused(forge(world.header(), payload, world.sign_a))


def test_admin_token_on_the_proxy_and_project_token_on_the_admin_api(world, operator_token, bao):
    world.refused(operator_token)
    admin_claims = parts(operator_token)[1]
    # An admin-audience token signed with the project's own key.
    world.refused(
        tokens.issue(kid=world.kid, claims=world.claims(aud="jetpero-admin", role="operator"), sign=world.sign_a)
    )
    # The admin key signing proxy claims.
    admin_sign = Signer(bao, None, mount="jetpero-transit", key="admin")
    admin_kid = parts(operator_token)[0]["kid"]
    world.refused(tokens.issue(kid=admin_kid, claims=world.claims(), sign=admin_sign))

    admin_api = world.api.as_(world.token)
    for response in (
        admin_api.get("/orgs"),
        admin_api.get(f"{world.a.path}/tokens"),
        admin_api.post(f"{world.a.path}/tokens", json={}),
    ):
        assert_uniform_401(response)
    forged = tokens.issue(
        kid=world.kid,
        claims={**world.claims(), "aud": "jetpero-admin", "role": "operator", "sub": admin_claims["sub"]},
        sign=world.sign_a,
    )
    assert_uniform_401(world.api.as_(forged).get("/orgs"))
    # Control: the admin key with admin claims is accepted.
    good = tokens.issue(kid=admin_kid, claims={**admin_claims, "exp": admin_claims["exp"] - 1}, sign=admin_sign)
    assert world.api.as_(good).get("/orgs").status_code == 200


# --------------------------------------------------------------------------- garbage


GARBAGE = [
    "x",
    "a.b",
    "a.b.c.d.e",
    "....",
    ".",
    "..",
    "a..c",
    "!!!.@@@.###",
    "eyJ.eyJ.sig",
    "e30.e30.e30",  # {} . {} . {}
    "W10.W10.AA",  # [] . []
    "bnVsbA.bnVsbA.AA",  # null . null
    "x" * 100_000,
    "\x00",
    "a\x00.b.c",
    "é.é.é",
    "€.€.€",
    "🔑.🔑.🔑",
    "Bearer",
    " ",
]


@pytest.mark.parametrize("value", GARBAGE, ids=lambda v: repr(v[:12]))
def test_garbage_is_a_uniform_401(world, value):
    world.refused(value)
    world.refused(value, "x-api-key")


def test_garbage_around_a_real_token(world):
    t = world.token
    for value in (
        t + ".",
        t + ".x",
        t + ".x.y",
        "." + t,
        t + "\x00",
        t.replace(".", "..", 1),
        t[: len(t) // 2],
        t + "A" * 100_000,
        t.upper(),
        t.replace("-", "+").replace("_", "/") + "+/",  # standard base64 alphabet
        t + "==",  # padding
    ):
        world.refused(value)
    header_b64 = b64(b'{"alg":"Ed25519","kid":"' + b"k" * 100_000 + b'","typ":"JWT"}')
    world.refused(f"{header_b64}.{t.split('.')[1]}.{t.split('.')[2]}")


def test_missing_or_wrong_scheme(world):
    before = len(world.upstream.requests)
    for headers in (
        {},
        {"Authorization": f"Basic {world.token}"},
        {"Authorization": world.token},
        {"Authorization": "Bearer "},
    ):
        assert_uniform_401(world.client.post(CHAT, json=BODY, headers=headers))
    assert len(world.upstream.requests) == before


# --------------------------------------------------------------------------- tenancy


def test_project_a_token_cannot_reach_project_b(world):
    b, upstream = world.b, world.upstream
    upstream.clear()
    attempts = [
        {"headers": {"X-JetPero-Project": b.namespace, "X-JetPero-Org": b.org, "OpenAI-Project": b.slug}},
        {"query_string": {"project": b.namespace, "org": b.org, "kid": parts(world.b_token)[0]["kid"]}},
        {"json": {**BODY, "project": b.namespace, "org": b.org, "sub": b.namespace}},
        {"headers": {"X-JetPero-Token": world.token, "x-api-key": world.b_token}},
    ]
    for attempt in attempts:
        headers = {**bearer(world.token), **attempt.pop("headers", {})}
        response = world.client.post(CHAT, headers=headers, **({"json": BODY} | attempt))
        assert response.status_code == 200
    # A token's own project decides: B's kid or B's sub in a request changes nothing.
    assert len(upstream.requests) == len(attempts)
    for seen in upstream.requests:
        assert seen.header_all("authorization") == [f"Bearer {FAKE_KEY}"]
        raw = seen.path.encode() + seen.body + repr(seen.headers).encode()
        assert KEY_B.encode() not in raw
        assert world.token.encode() not in raw and world.b_token.encode() not in raw
