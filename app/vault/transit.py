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
    """{version: raw 32-byte Ed25519 public key} for every live version."""
    data = client.secrets.transit.read_key(name=key, mount_point=mount)["data"]
    return {int(v): base64.b64decode(info["public_key"]) for v, info in data["keys"].items()}
