"""Ed25519 signatures on commands from the centre, checked before anything is acted on.

TLS and broker ACLs protect the link; a signature protects the command itself, so a broker or
backend component that is compromised still cannot open a door. Devices pin the centre's public
keys by key id (``kid``, for rotation). Each command carries an issue time, an expiry and a
nonce: the expiry bounds how long a nonce must be remembered (so the nonce table stays small),
the skew tolerates slightly unsynced clocks, and the nonce stops replays - an MQTT broker
re-delivers QoS 1 messages after a reconnect, and a similar system once unlocked a door twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

REQUIRED = (("cmd", str), ("args", dict), ("device", str), ("id", str), ("nonce", str), ("kid", str))


class CommandRejected(Exception):
    """Why a command was refused; ``reason`` is a short code for responses and counters."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def canonical(body: dict) -> bytes:
    """The signed bytes: the body without ``sig`` as sorted, compact UTF-8 JSON."""
    return json.dumps({k: v for k, v in body.items() if k != "sig"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """PEM PKCS8, readable by the owner only; never overwrites a key that exists."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key (PEM)")
    return key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


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


def sign_command(key: Ed25519PrivateKey, kid: str, device: str, cmd: str, args: dict, *, now: float,
                 ttl_s: float = 30.0, cmd_id: str | None = None, nonce: str | None = None) -> dict:
    body = {"v": 1, "cmd": cmd, "args": args, "device": device, "id": cmd_id or secrets.token_hex(16),
            "iat": now, "exp": now + ttl_s, "nonce": nonce or secrets.token_hex(16), "kid": kid}
    body["sig"] = base64.b64encode(key.sign(canonical(body))).decode()
    return body


class NonceStore(Protocol):
    def claim(self, nonce: str, exp: float, now: float) -> bool:
        """True the first time ``nonce`` is seen (remembered until ``exp``), False after."""


class MemoryNonceStore:
    """For tests and the central tool; the device uses its SQLite store (`Store.claim`)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def claim(self, nonce: str, exp: float, now: float) -> bool:
        self._seen = {n: e for n, e in self._seen.items() if e >= now}
        if nonce in self._seen:
            return False
        self._seen[nonce] = exp
        return True


class Verifier:
    def __init__(self, keys: dict[str, Ed25519PublicKey], device: str, nonces: NonceStore, *,
                 max_ttl_s: float = 300.0, skew_s: float = 30.0):
        self.keys = keys
        self.device = device
        self.nonces = nonces
        self.max_ttl_s = max_ttl_s
        self.skew_s = skew_s

    def verify(self, payload: bytes | dict, now: float) -> dict:
        """The verified body, or CommandRejected. The nonce is claimed last, so a forged message
        cannot burn the nonce of a genuine one."""
        body = payload
        if isinstance(payload, (bytes, bytearray)):
            try:
                body = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                raise CommandRejected("malformed", "not JSON") from None
        if not isinstance(body, dict):
            raise CommandRejected("malformed", "not a JSON object")
        if body.get("v") != 1:
            raise CommandRejected("malformed", "field 'v' must be 1")
        for field, kind in REQUIRED:
            if not isinstance(body.get(field), kind):
                raise CommandRejected("malformed", f"field '{field}' missing or not {kind.__name__}")
        for field in ("iat", "exp"):
            value = body.get(field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                # NaN compares false with everything: it would pass the expiry and replay checks
                raise CommandRejected("malformed", f"field '{field}' missing or not a finite number")
        sig = body.get("sig")
        if not sig:
            raise CommandRejected("unsigned")
        key = self.keys.get(body["kid"])
        if key is None:
            raise CommandRejected("unknown_key", f"key id '{body['kid']}' is not pinned on this device")
        try:
            key.verify(base64.b64decode(sig, validate=True), canonical(body))
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            raise CommandRejected("bad_signature") from None
        if body["device"] != self.device:
            raise CommandRejected("wrong_device", f"for '{body['device']}', this is '{self.device}'")
        if now > body["exp"]:
            raise CommandRejected("expired", f"{now - body['exp']:.0f} s ago")
        if body["iat"] > now + self.skew_s:
            raise CommandRejected("not_yet_valid", f"issued {body['iat'] - now:.0f} s in the future")
        if body["exp"] - body["iat"] > self.max_ttl_s:
            raise CommandRejected("too_long_lived", f"valid {body['exp'] - body['iat']:.0f} s > {self.max_ttl_s:g} s")
        if not self.nonces.claim(body["nonce"], body["exp"] + self.skew_s, now):
            raise CommandRejected("replayed", f"nonce {body['nonce']} already used")
        return body
