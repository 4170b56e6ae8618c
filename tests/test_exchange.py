"""The exchange: an identity provider's JWT for a short-lived end-user project token, and
every JWT attack against it (a uniform 401, no outbound fetch, no Vault call)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jws
from joserfc.jwk import OKPKey

from tests.exchange_idp import ALGORITHMS, Listener, TestIdp, VaultCalls, generate_key, trust
from tests.helpers import FAKE_KEY, Project, b64, b64json, bearer, parts, put_provider

ORIGIN = "https://app.example.com"  # the `project` fixture's allowed origin


@pytest.fixture(scope="module")
def idp():
    server = TestIdp()
    yield server
    server.stop()


@pytest.fixture
def trusted(app, api, project, provider, idp):
    response = trust(app, api, project, idp)
    assert response.status_code == 200, response.json
    app.extensions["jetpero"].sync_once()  # the IdP event applied now, not by the poller after a test cached a token
    return project


def exchange(client, project: str, token, **kwargs):
    return client.post(f"/exchange/{project}", json={"token": token}, **kwargs)


def assert_uniform_401(response) -> None:
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.json["message"] == "Invalid or missing token."


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_an_idp_jwt_of_each_algorithm_becomes_an_end_user_token_the_proxy_takes(client, trusted, idp, upstream, alg):
    response = exchange(client, trusted, idp.sign({"sub": "alice"}, alg))
    assert response.status_code == 201, response.json
    body = response.json
    assert body["end_user"] == "alice" and body["scope"] == ["*"] and body["expires_in"] == 900
    header, claims, _ = parts(body["token"])
    org, slug = trusted.split("/")
    assert header["kid"].startswith(f"{org}/{slug}/") and header["alg"] == "Ed25519"
    assert claims["end_user"] == "alice" and claims["idp"] == "test-idp" and claims["exp"] - claims["iat"] == 900
    answer = client.post("/proxy/openai/v1/chat/completions", headers=bearer(body["token"]), json={"model": "m"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert upstream.requests[-1].header("Authorization") == f"Bearer {FAKE_KEY}"


def test_an_end_user_token_works_again_from_the_cache(app, client, trusted, idp, upstream):
    token = exchange(client, trusted, idp.sign({"sub": "carol"})).json["token"]
    for _ in range(3):  # the first verifies it; the next ones are cache hits (their expiry read)
        answer = client.post("/proxy/openai/v1/chat/completions", headers=bearer(token), json={"model": "m"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert app.extensions["jetpero"].project_tokens.get(token) is not None  # it was kept


def test_the_token_may_come_as_a_bearer_and_the_user_claim_is_configurable(app, client, api, project, provider, idp):
    assert trust(app, api, project, idp, user_claim="email", policy={"ttl": 120}).status_code == 200
    token = idp.sign({"email": "bob@example.com"})
    response = client.post(f"/exchange/{project}", headers=bearer(token))
    assert response.status_code == 201, response.json
    assert response.json["end_user"] == "bob@example.com" and response.json["expires_in"] == 120
    assert_uniform_401(exchange(client, project, idp.sign({"email": None})))  # no such claim


def test_an_exchange_costs_one_vault_call_once_warm_and_writes_nothing(app, client, trusted, idp):
    assert exchange(client, trusted, idp.sign({})).status_code == 201  # warms the caches
    with VaultCalls(app) as calls:
        for n in range(5):
            assert exchange(client, trusted, idp.sign({"sub": f"user-{n}"})).status_code == 201
    assert calls.count == 5, calls.seen  # one transit sign each


def _hs256_with_public_key(idp: TestIdp, form: str) -> str:
    public = idp.keys["RS256"]
    raw = {
        "pem": public.as_pem(private=False),
        "der": public.as_der(private=False),
        "jwk": json.dumps(public.as_dict(private=False)).encode(),
    }[form]
    header = {"alg": "HS256", "kid": "RS256", "typ": "JWT"}
    signing_input = f"{b64json(header)}.{b64json(idp.claims())}"
    return f"{signing_input}.{b64(hmac.new(raw, signing_input.encode(), hashlib.sha256).digest())}"


def _none(idp: TestIdp, spelling: str) -> str:
    return f"{b64json({'alg': spelling, 'kid': 'RS256', 'typ': 'JWT'})}.{b64json(idp.claims())}."


def _embedded_jwk(idp: TestIdp) -> str:
    attacker = OKPKey.generate_key("Ed25519")
    return idp.sign({}, "EdDSA", key=attacker, jwk=attacker.as_dict(private=False))


def _nested(depth: int) -> str:
    payload = b64(("[" * depth + "]" * depth).encode())
    return f"{b64json({'alg': 'RS256', 'kid': 'RS256'})}.{payload}.{b64(b'x' * 64)}"


ATTACKS = {
    "alg none": lambda idp: _none(idp, "none"),
    "alg None": lambda idp: _none(idp, "None"),
    "alg NONE": lambda idp: _none(idp, "NONE"),
    "signature stripped": lambda idp: idp.sign({}).rsplit(".", 1)[0] + ".",
    "payload edited": lambda idp: (lambda t: f"{t.split('.')[0]}.{b64json(idp.claims(sub='admin'))}.{t.split('.')[2]}")(
        idp.sign({})
    ),
    "hs256 with public pem": lambda idp: _hs256_with_public_key(idp, "pem"),
    "hs256 with public der": lambda idp: _hs256_with_public_key(idp, "der"),
    "hs256 with public jwk": lambda idp: _hs256_with_public_key(idp, "jwk"),
    "embedded jwk": _embedded_jwk,
    "wrong issuer": lambda idp: idp.sign({"iss": "https://evil.example/"}),
    "no issuer": lambda idp: idp.sign({"iss": None}),
    "wrong audience": lambda idp: idp.sign({"aud": "another-app"}),
    "no audience": lambda idp: idp.sign({"aud": None}),
    "two audiences": lambda idp: idp.sign({"aud": ["jetpero-test-app", "another-app"]}),
    "expired": lambda idp: idp.sign({"exp": int(time.time()) - 1}),
    "exp now": lambda idp: idp.sign({"exp": int(time.time())}),
    "no exp": lambda idp: idp.sign({"exp": None}),
    "future nbf": lambda idp: idp.sign({"nbf": int(time.time()) + 3600}),
    "future iat": lambda idp: idp.sign({"iat": int(time.time()) + 3600}),
    "wrong key for kid": lambda idp: idp.sign({}, "RS256", key=generate_key("RS256")),
    "es256 signed under the rsa kid": lambda idp: idp.sign({}, "ES256", kid="RS256"),
    "unknown crit": lambda idp: _forged_rs256(idp, {"alg": "RS256", "kid": "RS256", "crit": ["x-bind"], "x-bind": 1}),
    "kid path traversal": lambda idp: _forged_rs256(idp, {"alg": "RS256", "kid": "../../etc/passwd"}),
    "one segment": lambda idp: "abc",
    "two segments": lambda idp: "abc.def",
    "five segments": lambda idp: "a.b.c.d.e",
    "not base64": lambda idp: "!!!.???.***",
    "nul and unicode": lambda idp: "\x00é.\u2603.x",
    "huge": lambda idp: "a" * 9000 + ".b.c",
    "deeply nested json": lambda idp: _nested(5000),
    "not a string": lambda idp: {"a": 1},
    "empty": lambda idp: "",
}


def _forged_rs256(idp: TestIdp, header: dict) -> str:
    """Validly signed by the IdP's RSA key, with exactly this header."""
    signing_input = f"{b64json(header)}.{b64json(idp.claims())}".encode()
    signature = idp.keys["RS256"].private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64(signature)}"


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_jwt_attack_is_a_uniform_401(client, trusted, idp, attack):
    response = exchange(client, trusted, ATTACKS[attack](idp))
    assert_uniform_401(response)
    assert "token" not in response.json


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_a_key_url_in_the_header_is_never_fetched(client, trusted, idp, header):
    listener = Listener()
    try:
        attacker = OKPKey.generate_key("Ed25519")
        token = idp.sign({}, "EdDSA", key=attacker, **{header: listener.url})
        assert_uniform_401(exchange(client, trusted, token))
        time.sleep(0.3)
        assert listener.connections == 0
    finally:
        listener.stop()


def test_hs256_is_refused_even_if_the_idp_allows_it_by_name(app, api, project, provider, idp):
    response = trust(app, api, project, idp, algorithms=["HS256"])
    assert response.status_code == 422


def test_only_the_configured_algorithms_are_accepted(app, client, api, project, provider, idp):
    assert trust(app, api, project, idp, algorithms=["ES256"]).status_code == 200
    assert exchange(client, project, idp.sign({}, "ES256")).status_code == 201
    assert_uniform_401(exchange(client, project, idp.sign({}, "RS256")))
    assert_uniform_401(exchange(client, project, idp.sign({}, "EdDSA")))


def test_unknown_kids_refetch_the_jwks_at_most_once_a_minute_and_cost_no_vault_call(app, client, trusted, idp):
    assert exchange(client, trusted, idp.sign({})).status_code == 201
    before = idp.jwks_hits
    with VaultCalls(app) as calls:
        for n in range(30):
            assert_uniform_401(exchange(client, trusted, idp.sign({}, "RS256", kid=f"random-{n}")))
            assert_uniform_401(exchange(client, trusted, ATTACKS["alg none"](idp)))
    assert idp.jwks_hits - before <= 1
    assert calls.count == 0


def test_a_new_key_is_picked_up_on_its_first_unknown_kid(app, client, api, project, provider):
    rotating = TestIdp()
    try:
        assert trust(app, api, project, rotating).status_code == 200
        assert exchange(client, project, rotating.sign({})).status_code == 201
        hits = rotating.jwks_hits
        extension = app.extensions["jetpero.exchange"].key_sets
        for ident in list(extension._sets):  # the last fetch "a minute ago"
            extension._sets[ident] = (extension._sets[ident][0], extension._sets[ident][1] - 61)
        rotating.keys["RS256-2"] = generate_key("RS256")
        token = jws.serialize_compact(
            {"alg": "RS256", "kid": "RS256-2"}, json.dumps(rotating.claims()).encode(), rotating.keys["RS256-2"]
        )
        assert exchange(client, project, token).status_code == 201
        assert rotating.jwks_hits == hits + 1
    finally:
        rotating.stop()


def test_floods_naming_unknown_projects_cost_a_bounded_number_of_vault_calls(app, client, idp, org):
    token = idp.sign({})
    with VaultCalls(app) as calls:
        statuses = [exchange(client, f"{org}/nope-{n}", token).status_code for n in range(60)]
    assert set(statuses) <= {401, 503}
    assert calls.count <= 2 * 25  # at most COLD_LOADS_PER_SECOND loads a second, two calls each
    assert 503 in statuses  # the bound was reached (and says when to retry)
    time.sleep(1.1)  # the bound's window passes before the next test


@pytest.mark.parametrize("body", [b"[" * 8000 + b"]" * 8000, b'{"token": ' + b"[" * 8000 + b"]" * 8000 + b"}", b"\xff{"])
def test_a_bad_body_is_the_uniform_401(client, trusted, body):
    assert_uniform_401(client.post(f"/exchange/{trusted}", data=body, content_type="application/json"))


def test_a_body_above_the_limit_is_413(client, trusted):
    response = client.post(f"/exchange/{trusted}", data=b"{" + b" " * 20000 + b"}", content_type="application/json")
    assert response.status_code == 413


def test_the_preflight_and_answers_carry_cors_for_allowed_origins_only(client, trusted, idp):
    preflight = client.options(
        f"/exchange/{trusted}",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    done = exchange(client, trusted, idp.sign({}), headers={"Origin": ORIGIN})
    assert done.status_code == 201 and done.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = exchange(client, trusted, "x.y.z", headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    evil = client.options(
        f"/exchange/{trusted}", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers
    other = exchange(client, trusted, idp.sign({}), headers={"Origin": "https://evil.example"})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers


def test_a_project_without_identity_providers_exchanges_nothing(client, project, provider, idp):
    assert_uniform_401(exchange(client, project, idp.sign({})))


def test_the_policy_scope_binds_the_token(app, client, api, project, provider, idp, upstream):
    org, slug = project.split("/")
    put_provider(api, Project(org, slug), "anthropic", template="anthropic", api_key=FAKE_KEY, base_url=upstream.url)
    assert trust(app, api, project, idp, policy={"scope": ["anthropic"]}).status_code == 200
    token = exchange(client, project, idp.sign({})).json["token"]
    assert parts(token)[1]["scope"] == "anthropic"
    refused = client.post("/proxy/openai/v1/chat/completions", headers=bearer(token), json={"model": "m"})
    assert refused.status_code == 403


def test_secrets_never_appear_in_answers(client, trusted, idp):
    response = exchange(client, trusted, idp.sign({}))
    text = response.get_data(as_text=True)
    assert FAKE_KEY not in text and "kv/" not in text and "transit" not in text


def test_the_jwks_fetch_passes_the_address_guard_at_use(make_app, trusted, idp):
    strict = make_app(JETPERO_ALLOW_PRIVATE_UPSTREAMS="false")  # the IdP was stored while allowed
    hits = idp.jwks_hits
    response = strict.test_client().post(f"/exchange/{trusted}", json={"token": idp.sign({})})
    assert response.status_code == 503 and "JWKS" in response.json["message"]
    assert idp.jwks_hits == hits  # the guard closed the connection before a byte was sent


PER_ALGORITHM = {
    "wrong issuer": lambda idp, alg: idp.sign({"iss": "https://evil.example/"}, alg),
    "wrong audience": lambda idp, alg: idp.sign({"aud": "another-app"}, alg),
    "expired": lambda idp, alg: idp.sign({"exp": int(time.time()) - 1}, alg),
    "future nbf": lambda idp, alg: idp.sign({"nbf": int(time.time()) + 3600}, alg),
    "signed by a stranger's key": lambda idp, alg: idp.sign({}, alg, key=generate_key(alg)),
    "another algorithm's kid": lambda idp, alg: idp.sign({}, alg, kid=next(a for a in ALGORITHMS if a != alg)),
}


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("attack", PER_ALGORITHM)
def test_claim_and_key_attacks_fail_with_every_algorithm(client, trusted, idp, alg, attack):
    assert_uniform_401(exchange(client, trusted, PER_ALGORITHM[attack](idp, alg)))


@pytest.mark.parametrize(
    "document",
    [{"keys": [], "padding": "x" * 70000}, {"keys": "nope"}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "RS256"}]}],
)
def test_a_bad_jwks_document_refuses_the_exchange_cleanly(app, client, api, project, provider, document):
    bad = TestIdp()
    try:
        bad.jwks = lambda: document
        assert trust(app, api, project, bad).status_code == 200
        response = exchange(client, project, bad.sign({}))
        assert response.status_code in (401, 503), response.json  # never a 500; a symmetric key is never used
        assert "token" not in response.json
    finally:
        bad.stop()
