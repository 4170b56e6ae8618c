"""Transit: encrypt provider keys (bound to a context) and sign JWS with Ed25519."""

from __future__ import annotations

import base64

import hvac


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def enable(client: hvac.Client, path: str, description: str) -> None:
    client.sys.enable_secrets_engine(backend_type="transit", path=path, description=description)


def create_encryption_key(client: hvac.Client, mount: str, name: str) -> None:
    """An aes256-gcm96 key whose derived subkeys depend on a context (the provider)."""
    client.secrets.transit.create_key(name=name, key_type="aes256-gcm96", derived=True, mount_point=mount)


def create_signing_key(client: hvac.Client, mount: str, name: str) -> None:
    client.secrets.transit.create_key(name=name, key_type="ed25519", mount_point=mount)


def encrypt(client: hvac.Client, mount: str, key: str, plaintext: str, *, context: str) -> str:
    response = client.secrets.transit.encrypt_data(
        name=key, plaintext=_b64(plaintext.encode()), context=_b64(context.encode()), mount_point=mount
    )
    return response["data"]["ciphertext"]


def decrypt(client: hvac.Client, mount: str, key: str, ciphertext: str, *, context: str) -> str:
    response = client.secrets.transit.decrypt_data(
        name=key, ciphertext=ciphertext, context=_b64(context.encode()), mount_point=mount
    )
    return base64.b64decode(response["data"]["plaintext"]).decode()


def sign(client: hvac.Client, mount: str, key: str, message: bytes, *, version: int | None = None) -> bytes:
    """Raw Ed25519 signature of `message` by key `version` (default: latest); the key never leaves Vault."""
    response = client.secrets.transit.sign_data(
        name=key, hash_input=_b64(message), key_version=version, mount_point=mount
    )
    _, _, encoded = response["data"]["signature"].rpartition(":")
    return base64.b64decode(encoded)


def public_keys(client: hvac.Client, mount: str, key: str) -> dict[int, bytes]:
    """{version: raw 32-byte Ed25519 public key} for every version that still verifies (not retired
    below the key's `min_decryption_version`)."""
    data = client.secrets.transit.read_key(name=key, mount_point=mount)["data"]
    floor = int(data.get("min_decryption_version") or 1)
    return {int(v): base64.b64decode(info["public_key"]) for v, info in data["keys"].items() if int(v) >= floor}


def key_info(client: hvac.Client, mount: str, key: str) -> dict:
    """A key's versions and settings: latest_version, min_decryption_version, min_available_version,
    auto_rotate_period (seconds), and {version: created (RFC 3339)} under `versions`."""
    data = client.secrets.transit.read_key(name=key, mount_point=mount)["data"]
    created = {int(v): (info["creation_time"] if isinstance(info, dict) else info) for v, info in data["keys"].items()}
    return {
        "latest_version": int(data["latest_version"]),
        "min_decryption_version": int(data["min_decryption_version"]),
        "min_available_version": int(data.get("min_available_version") or 0),
        "auto_rotate_period": int(data.get("auto_rotate_period") or 0),
        "versions": created,
    }


def rotate(client: hvac.Client, mount: str, key: str) -> None:
    """A new key version; it encrypts/signs from now on, older ones still decrypt/verify."""
    client.secrets.transit.rotate_key(name=key, mount_point=mount)


def configure(
    client: hvac.Client,
    mount: str,
    key: str,
    *,
    min_decryption_version: int | None = None,
    auto_rotate: int | None = None,
) -> None:
    """Retire versions below `min_decryption_version`, and/or set the automatic rotation period (seconds)."""
    client.secrets.transit.update_key_configuration(
        name=key,
        min_decryption_version=min_decryption_version,
        auto_rotate_period=None if auto_rotate is None else f"{auto_rotate}s",
        mount_point=mount,
    )


def rewrap(client: hvac.Client, mount: str, key: str, ciphertext: str, *, context: str) -> str:
    """The same plaintext under the key's latest version (Vault never returns the plaintext)."""
    response = client.secrets.transit.rewrap_data(
        name=key, ciphertext=ciphertext, context=_b64(context.encode()), mount_point=mount
    )
    return response["data"]["ciphertext"]


def ciphertext_version(ciphertext: str) -> int:
    """The key version a `vault:vN:...` ciphertext is under."""
    return int(ciphertext.split(":", 2)[1].removeprefix("v"))
