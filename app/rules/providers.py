"""Provider templates (where each provider lives, how its key is injected upstream) and the
rules a provider's key and base URL must meet."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

AUTH_TYPES = ("bearer", "header", "query", "basic")


@dataclass(frozen=True)
class Template:
    name: str
    base_url: str | None  # None: must be given (custom)
    auth_type: str
    auth_name: str | None = None  # header or query-parameter name


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("openai", "https://api.openai.com", "bearer"),
        Template("anthropic", "https://api.anthropic.com", "header", "x-api-key"),
        Template("gemini", "https://generativelanguage.googleapis.com", "header", "x-goog-api-key"),
        Template("replicate", "https://api.replicate.com", "bearer"),
        Template("mistral", "https://api.mistral.ai", "bearer"),
        Template("groq", "https://api.groq.com/openai", "bearer"),
        Template("cohere", "https://api.cohere.com", "bearer"),
        Template("custom", None, "bearer"),
    )
}


def key_error(api_key: str) -> str | None:
    """Why a provider key cannot be stored, or None (printable ASCII, no spaces)."""
    if not 1 <= len(api_key) <= 4096:
        return "must be 1 to 4096 characters"
    if any(not ("!" <= ch <= "~") for ch in api_key):
        return "must not contain whitespace, control or non-ASCII characters"
    return None


def hint(api_key: str) -> str:
    """The last 4 characters, and only for keys long enough that 4 give nothing away."""
    return api_key[-4:] if len(api_key) >= 16 else ""


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any form a resolver accepts (0x7f000001, 2130706433...)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.inet_aton(host))
    except OSError:
        return None


def base_url_error(value: str, *, allow_private: bool) -> str | None:
    """Why a provider base URL is refused (checked again at every connection by the proxy)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not hold user information"
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return "must not hold a query or fragment"
    if any(ch in value for ch in "\\\r\n\t\0 ") or "%" in parts.path or "/../" in f"{parts.path}/":
        return "holds characters that are not allowed"
    host = parts.hostname.rstrip(".")  # `localhost.` and `127.0.0.1.` resolve as without the dot
    if not host:
        return "must be an http(s) URL with a host"
    address = literal_ip(host)
    private = (address is not None and not address.is_global) or host == "localhost" or host.endswith(".localhost")
    if private and not allow_private:
        return (
            "points at a loopback, private or link-local address, which this JetPero refuses"
            " (an operator allows them with JETPERO_ALLOW_PRIVATE_UPSTREAMS=true)"
        )
    if parts.scheme == "http" and not private:
        return "must use https"
    return None


def settings(data: dict) -> dict:
    """The non-secret settings stored beside the key's ciphertext: the template's defaults
    filled in, the base URL without its trailing slash, and the key's hint."""
    template = TEMPLATES[data["template"]]
    return {
        "template": template.name,
        "base_url": (data.get("base_url") or template.base_url or "").rstrip("/"),
        "auth_type": data.get("auth_type", template.auth_type),
        "auth_name": data.get("auth_name", template.auth_name),
        "key_hint": hint(data["api_key"]),
    }
