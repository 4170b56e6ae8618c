"""Private and loopback provider addresses: refused at write with the setting that allows them
named (trailing dots included), and refused at call time as this JetPero's refusal (403), not
as the provider's failure (502)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from app.rules.providers import base_url_error
from tests.checks import assert_error
from tests.helpers import FAKE_KEY, Project, bearer, issue_token, put_provider

SETTING = "JETPERO_ALLOW_PRIVATE_UPSTREAMS"
PRIVATE = [
    "http://localhost",
    "http://localhost.",
    "http://LOCALHOST.:8080",
    "http://127.0.0.1.",
    "http://127.0.0.1..",
    "https://api.localhost.",
    "https://api.localhost",
    "http://10.0.0.1.",
    "http://[::1]:8080",
    "http://0x7f000001.",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_addresses_are_refused_with_the_setting_named(url):
    error = base_url_error(url, allow_private=False)
    assert error and SETTING in error, url
    assert base_url_error(url, allow_private=True) is None, url


@pytest.mark.parametrize("url", ["https://api.example.com.", "https://api.example.com"])
def test_a_public_name_with_its_trailing_dot_is_still_a_public_name(url):
    assert base_url_error(url, allow_private=False) is None
    assert base_url_error(url.replace("https", "http"), allow_private=False) == "must use https"


def test_a_url_that_is_only_dots_has_no_host():
    assert base_url_error("http://./", allow_private=True) == "must be an http(s) URL with a host"


@pytest.fixture(scope="module")
def strict(make_app):
    return make_app(JETPERO_ALLOW_PRIVATE_UPSTREAMS="false").test_client()


@pytest.mark.parametrize("host", ["localhost.", "127.0.0.1.", "api.localhost."])
def test_the_write_refuses_trailing_dot_hosts_naming_the_field_and_the_setting(strict, api, project, host):
    response = strict.put(
        f"/api/v1/orgs/{project.replace('/', '/projects/')}/providers/local",
        json={"template": "custom", "api_key": FAKE_KEY, "base_url": f"http://{host}:8080"},
        headers=bearer(api.token),
    )
    body = assert_error(response, 422)
    assert SETTING in body["message"]
    assert SETTING in body["errors"]["json"]["base_url"][0]


def test_an_address_refused_at_call_time_is_a_403_naming_the_setting(strict, api, project, upstream):
    target = Project(*project.split("/"))
    port = urlsplit(upstream.url).port
    put_provider(api, target, "local", template="custom", api_key=FAKE_KEY, base_url=f"http://127.0.0.1:{port}")
    token = issue_token(api, target)["token"]
    response = strict.post("/proxy/local/v1/chat/completions", headers=bearer(token), json={})
    body = assert_error(response, 403)  # not a 5xx: the SDKs would retry it, and the provider is fine
    assert SETTING in body["message"] and "base_url" in body["message"]
    assert FAKE_KEY not in response.get_data(as_text=True)
    assert upstream.requests == []
