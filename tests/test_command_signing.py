"""Ed25519 command signing without a broker: every refusal reason, and keys on disk."""

from __future__ import annotations

import json
import os

import pytest

from gatectl.sync.signing import (CommandRejected, MemoryNonceStore, Verifier, canonical, generate_private_key,
                                  load_private_key, load_public_key, public_key_b64, save_private_key, sign_command)

NOW = 1_800_000_000.0


@pytest.fixture
def key():
    return generate_private_key()


def verifier(key, **kw) -> Verifier:
    return Verifier({"k1": key.public_key()}, "dev1", MemoryNonceStore(), **kw)


def reason(v: Verifier, payload, now: float = NOW) -> str:
    with pytest.raises(CommandRejected) as exc:
        v.verify(payload, now)
    return exc.value.reason


def test_round_trip_and_canonical_form(key):
    body = sign_command(key, "k1", "dev1", "door.open", {"door": "front"}, now=NOW)
    assert verifier(key).verify(json.dumps(body).encode(), NOW)["args"] == {"door": "front"}
    shuffled = dict(reversed(list(body.items())))
    assert canonical(shuffled) == canonical(body) and b'"sig"' not in canonical(body)


def test_every_refusal(key):
    v = verifier(key, max_ttl_s=300, skew_s=30)
    good = sign_command(key, "k1", "dev1", "door.open", {"door": "front"}, now=NOW)
    assert reason(v, b"{not json") == "malformed"
    assert reason(v, {**good, "args": "x"}) == "malformed"
    assert reason(v, {k: x for k, x in good.items() if k != "sig"}) == "unsigned"
    assert reason(v, {**good, "kid": "k2"}) == "unknown_key"
    assert reason(v, {**good, "args": {"door": "back"}}) == "bad_signature"  # tampered
    assert reason(v, sign_command(generate_private_key(), "k1", "dev1", "door.open", {}, now=NOW)) == "bad_signature"
    assert reason(v, sign_command(key, "k1", "dev2", "door.open", {}, now=NOW)) == "wrong_device"
    assert reason(v, good, now=NOW + 31) == "expired"
    assert reason(v, sign_command(key, "k1", "dev1", "door.open", {}, now=NOW + 60)) == "not_yet_valid"
    assert reason(v, sign_command(key, "k1", "dev1", "door.open", {}, now=NOW, ttl_s=3600)) == "too_long_lived"
    v.verify(good, NOW)
    assert reason(v, good) == "replayed"


def test_a_forgery_does_not_burn_the_genuine_nonce(key):
    v = verifier(key)
    good = sign_command(key, "k1", "dev1", "door.open", {}, now=NOW)
    forged = sign_command(generate_private_key(), "k1", "dev1", "door.open", {}, now=NOW, nonce=good["nonce"])
    assert reason(v, forged) == "bad_signature"
    assert v.verify(good, NOW)["nonce"] == good["nonce"]


def test_nonce_memory_is_bounded():
    store = MemoryNonceStore()
    for i in range(1000):
        assert store.claim(f"n{i}", NOW + 10, NOW)
    assert store.claim("late", NOW + 100, NOW + 20)
    assert len(store._seen) == 1  # the expired ones were forgotten


def test_keys_on_disk(tmp_path, key):
    path = tmp_path / "central.key"
    save_private_key(key, path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        save_private_key(key, path)
    assert public_key_b64(load_private_key(path)) == public_key_b64(key)
    with pytest.raises(ValueError, match=r"nope\.key: file not found"):
        load_private_key(tmp_path / "nope.key")
    (tmp_path / "junk.key").write_text("junk")
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        load_private_key(tmp_path / "junk.key")
    from cryptography.hazmat.primitives import serialization
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_b64(load_public_key(pem.decode())) == public_key_b64(key)
    with pytest.raises(ValueError):
        load_public_key("AAAA")
