"""Signed central commands, checked with real Ed25519 keys: each refusal, replay, keys on disk."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from gatectl.core.keys import load_public_key
from gatectl.sync.signing import (
    CommandRejected,
    MemoryNonceStore,
    Verifier,
    canonical,
    generate_private_key,
    load_private_key,
    public_key_b64,
    save_private_key,
    sign_command,
)

NOW = 1_800_000_000.0
DEVICE = "gate-north"


@pytest.fixture
def key():
    return generate_private_key()


@pytest.fixture
def verifier(key) -> Verifier:
    return Verifier({"k1": key.public_key()}, DEVICE, MemoryNonceStore(), max_ttl_s=300, skew_s=30)


def signed(key, **kw) -> dict:
    opts = {"device": DEVICE, "cmd": "door.open", "args": {"door": "front"}, "now": NOW} | kw
    return sign_command(key, opts.pop("kid", "k1"), opts.pop("device"), opts.pop("cmd"), opts.pop("args"), **opts)


def rejected(v: Verifier, payload, now: float = NOW) -> CommandRejected:
    with pytest.raises(CommandRejected) as exc:
        v.verify(payload, now)
    assert "\n" not in str(exc.value)
    return exc.value


def test_round_trip_bytes_and_dict(key, verifier):
    body = signed(key, cmd_id="c-1", nonce="n-1")
    assert set(body) == {"v", "cmd", "args", "device", "id", "iat", "exp", "nonce", "kid", "sig"}
    assert (body["v"], body["id"], body["nonce"], body["iat"], body["exp"]) == (1, "c-1", "n-1", NOW, NOW + 30)
    got = verifier.verify(json.dumps(body).encode(), NOW)
    assert got["cmd"] == "door.open" and got["args"] == {"door": "front"}
    other = signed(key)  # random id and nonce
    assert len(other["id"]) == 32 and len(other["nonce"]) == 32 and other["nonce"] != body["nonce"]
    assert verifier.verify(other, NOW)["id"] == other["id"]


def test_canonical_ignores_key_order_and_excludes_sig(key):
    body = signed(key, args={"b": 1, "a": "é"})
    shuffled = dict(reversed(list(body.items())))
    assert canonical(shuffled) == canonical(body) == canonical({k: v for k, v in body.items() if k != "sig"})
    assert b'"sig"' not in canonical(body)
    assert "é".encode() in canonical(body) and b" " not in canonical(body)


def test_tampered_args_is_bad_signature(key, verifier):
    err = rejected(verifier, {**signed(key), "args": {"door": "back"}})
    assert err.reason == "bad_signature"


def test_other_key_under_known_kid_is_bad_signature(verifier):
    assert rejected(verifier, signed(generate_private_key())).reason == "bad_signature"


def test_garbage_signature_is_bad_signature(key, verifier):
    for sig in ("not base64!", "AAAA"):
        assert rejected(verifier, {**signed(key), "sig": sig}).reason == "bad_signature"
    assert rejected(verifier, {**signed(key), "sig": 12345}).reason == "malformed"  # the schema is strict


def test_unknown_kid(key, verifier):
    err = rejected(verifier, signed(key, kid="k9"))
    assert err.reason == "unknown_key" and "k9" in str(err)


def test_missing_or_empty_sig_is_unsigned(key, verifier):
    body = signed(key)
    assert rejected(verifier, {k: v for k, v in body.items() if k != "sig"}).reason == "unsigned"
    assert rejected(verifier, {**body, "sig": ""}).reason == "unsigned"


def test_malformed_payloads(key, verifier):
    for payload in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"door.open"'):
        assert rejected(verifier, payload).reason == "malformed"
    body = signed(key)
    for field in ("v", "cmd", "args", "device", "id", "iat", "exp", "nonce", "kid"):
        err = rejected(verifier, {k: v for k, v in body.items() if k != field})
        assert err.reason == "malformed" and field in str(err), field
    for field, bad in (("v", 2), ("args", "x"), ("iat", "now"), ("exp", None), ("nonce", 7)):
        assert rejected(verifier, {**body, field: bad}).reason == "malformed", field


def test_wrong_device(key, verifier):
    assert rejected(verifier, signed(key, device="gate-south")).reason == "wrong_device"


def test_expired(key, verifier):
    body = signed(key)
    assert rejected(verifier, body, now=NOW + 30.5).reason == "expired"
    assert verifier.verify(body, NOW + 30)["id"] == body["id"]  # exp itself is still valid


def test_not_yet_valid_beyond_skew(key, verifier):
    assert rejected(verifier, signed(key, now=NOW + 31)).reason == "not_yet_valid"
    assert verifier.verify(signed(key, now=NOW + 29), NOW)  # a slightly fast central clock is tolerated


def test_too_long_lived(key, verifier):
    assert rejected(verifier, signed(key, ttl_s=301)).reason == "too_long_lived"
    assert verifier.verify(signed(key, ttl_s=300), NOW)


def test_redelivered_message_is_replayed(key, verifier):
    payload = json.dumps(signed(key)).encode()
    verifier.verify(payload, NOW)
    err = rejected(verifier, payload, now=NOW + 1)  # QoS 1 re-delivery after a reconnect
    assert err.reason == "replayed"


def test_rejected_messages_do_not_burn_the_nonce(key, verifier):
    good = signed(key)
    forged = signed(generate_private_key(), nonce=good["nonce"], args={"door": "all"})
    assert rejected(verifier, forged).reason == "bad_signature"
    misrouted = signed(key, device="gate-south", nonce=good["nonce"])
    assert rejected(verifier, misrouted).reason == "wrong_device"
    assert verifier.verify(good, NOW)["nonce"] == good["nonce"]


def test_rejection_message_format():
    assert str(CommandRejected("expired", "3 s ago")) == "expired: 3 s ago"
    assert str(CommandRejected("unsigned")) == "unsigned"
    assert CommandRejected("expired", "x").reason == "expired"


def test_memory_nonce_store_forgets_by_command_time():
    store = MemoryNonceStore()
    assert store.claim("a", NOW + 10, NOW, NOW - 100) and not store.claim("a", NOW + 10, NOW, NOW - 100)
    for i in range(1000):
        assert store.claim(f"n{i}", NOW + 10, NOW, NOW - 100)
    assert store.newest_iat() == NOW
    assert store.claim("late", NOW + 100, NOW + 50, NOW + 11)
    assert len(store._seen) == 1  # every nonce that expired before the given time is gone
    assert store.newest_iat() == NOW + 50
    assert store.claim("a", NOW + 100, NOW + 11, NOW + 11)  # a forgotten nonce may be claimed again


def test_private_key_round_trip_mode_and_no_overwrite(tmp_path, key):
    path = tmp_path / "central.key"
    save_private_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_b64(load_private_key(path)) == public_key_b64(key)
    with pytest.raises(FileExistsError):
        save_private_key(generate_private_key(), path)
    assert public_key_b64(load_private_key(path)) == public_key_b64(key)  # untouched


def test_private_key_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.key"
    junk = tmp_path / "junk.key"
    junk.write_text("junk")
    rsa_like = tmp_path / "pub.pem"
    rsa_like.write_bytes(generate_private_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for path, msg in ((missing, "file not found"), (junk, "not an Ed25519 private key (PEM)"),
                      (rsa_like, "not an Ed25519 private key (PEM)")):
        with pytest.raises(ValueError) as exc:
            load_private_key(path)
        assert str(exc.value) == f"{path}: {msg}"


def test_load_public_key_base64_and_pem(key):
    b64 = public_key_b64(key)
    assert b64 == public_key_b64(key.public_key()) and len(b64) == 44
    assert public_key_b64(load_public_key(b64 + "\n")) == b64
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert public_key_b64(load_public_key(pem.decode())) == b64
    for bad in ("AAAA", "not base64 at all", "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"):
        with pytest.raises(ValueError) as exc:
            load_public_key(bad)
        assert "\n" not in str(exc.value)


def test_verifies_with_a_key_loaded_from_its_base64(key):
    v = Verifier({"k1": load_public_key(public_key_b64(key))}, DEVICE, MemoryNonceStore())
    assert v.verify(json.dumps(signed(key)).encode(), NOW)["device"] == DEVICE


def test_non_finite_times_are_malformed():
    """NaN compares false with everything: it must not slip past expiry and replay checks."""
    key = generate_private_key()
    v = Verifier({"k1": key.public_key()}, "dev1", MemoryNonceStore())
    for field in ("iat", "exp"):
        for bad in (float("nan"), float("inf")):
            body = sign_command(key, "k1", "dev1", "door.open", {}, now=1_800_000_000.0)
            body[field] = bad
            body["sig"] = base64.b64encode(key.sign(canonical(body))).decode()
            with pytest.raises(CommandRejected) as exc:
                v.verify(body, 1_800_000_000.0)
            assert exc.value.reason == "malformed"
