"""A cheap authenticated call to a provider, to check a new key before it replaces the current
one (`provider_keys.rotate`'s `verify`), through the proxy's one outbound seam."""

from __future__ import annotations

from ..services.errors import Invalid
from .forward import inject, upstream_url
from .upstream import Upstream

# The call per template: it lists models, which costs nothing and needs a valid key.
VERIFY_PATHS = {"openai": "/v1/models", "anthropic": "/v1/models", "gemini": "/v1beta/models"}
VERIFY_HEADERS = {"anthropic": {"anthropic-version": "2023-06-01"}}


def verifier(upstream: Upstream):
    """`verify(record, key)` for `provider_keys.rotate`: one call through the proxy's outbound seam;
    Invalid (422) when the provider refuses the key."""

    def verify(current: dict, key: str) -> None:
        path = VERIFY_PATHS.get(current["template"])
        if path is None:
            raise Invalid(f"verify is not available for the {current['template']} template; rotate without it.")
        headers = dict(VERIFY_HEADERS.get(current["template"], {}))
        url = inject(headers, upstream_url(current["base_url"], path, b""), current, key)
        answer = upstream.send("GET", url, body=None, headers=headers, chunked=False)
        try:
            status = answer.status
        finally:
            answer.release_conn()
        if status in (401, 403):
            raise Invalid(f"The provider refused the new key (HTTP {status}): nothing was changed.")
        if not 200 <= status < 300:
            raise Invalid(f"The provider could not check the new key (HTTP {status}): nothing was changed.")

    return verify
