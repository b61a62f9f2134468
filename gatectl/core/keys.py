"""Public-key text -> an Ed25519 key: the one parser for `sync.command_keys` (checked when the
config loads) and for the keys the sync layer verifies with. Floor 0 because the config must
refuse a bad key without importing the sync layer."""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def load_public_key(text: str) -> Ed25519PublicKey:
    """Base64 of the raw 32-byte key (what `gatectl central keygen` prints) or a PEM public key."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError:
            key = None
        if isinstance(key, Ed25519PublicKey):
            return key
        raise ValueError("not an Ed25519 public key (PEM)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("not an Ed25519 public key (base64 of 32 bytes, or PEM)")
    return Ed25519PublicKey.from_public_bytes(raw)
