"""Provider templates: where each provider lives and how its key is injected upstream."""

from __future__ import annotations

from dataclasses import dataclass

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
