"""Ed25519 signatures on commands from the centre, checked before anything is acted on.

TLS and broker ACLs protect the link; a signature protects the command itself, so a broker or
backend component that is compromised still cannot open a door. Devices pin the centre's public
keys by key id (``kid``, for rotation). Each command carries an issue time, an expiry and a
nonce: the expiry bounds how long a nonce must be remembered (so the nonce table stays small),
the skew tolerates slightly unsynced clocks, and the nonce stops replays - an MQTT broker
re-delivers QoS 1 messages after a reconnect, and a similar system once unlocked a door twice.

Enrollment changes (residents, templates, status, watchlist entries) are signed by the same
keys over the same canonical form (`sign_change` / `verify_change`): the signature covers the
uid, version, op, type and the target (site, and one device or ``*`` for the whole site), so a
change cannot be retargeted, and a retained or late one only ever means what the centre said.
Changes carry no expiry or nonce: they are idempotent by version, bounded in `enrollment`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gatectl.core.safe_text import shown
from gatectl.sync.inbound import Command, Refused, is_token, load_json, validated

log = logging.getLogger("gatectl.sync")


class CommandRejected(Exception):
    """Why a command was refused; ``reason`` is a short code for responses and counters."""

    def __init__(self, reason: str, detail: str = "", cmd_id: str | None = None):
        super().__init__(f"{reason}: {shown(detail)}" if detail else reason)
        self.reason = reason
        self.cmd_id = cmd_id  # when it could be read, so the sender can match the answer


def canonical(body: dict) -> bytes:
    """The signed bytes: the body without ``sig`` as sorted, compact UTF-8 JSON."""
    return json.dumps(
        {k: v for k, v in body.items() if k != "sig"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


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
    if not isinstance(key, Ed25519PrivateKey):  # a bad file, not a bad argument: ValueError
        raise ValueError(f"{path}: not an Ed25519 private key (PEM)")  # noqa: TRY004
    return key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(
        pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()


def sign(key: Ed25519PrivateKey, kid: str, body: dict) -> dict:
    """``body`` with ``kid`` and ``sig`` (Ed25519 over `canonical`, base64) added."""
    body = {**body, "kid": kid}
    body.pop("sig", None)
    body["sig"] = base64.b64encode(key.sign(canonical(body))).decode()
    return body


def check_signature(
    keys: dict[str, Ed25519PublicKey], body: dict, cmd_id: str | None = None
) -> None:
    """CommandRejected (carrying ``cmd_id``) unless ``body`` is signed by one of the pinned
    ``keys`` (commands and enrollment changes alike). ``kid`` must already be known to be text."""
    sig = body.get("sig")
    if not sig:
        raise CommandRejected("unsigned", cmd_id=cmd_id)
    key = keys.get(body["kid"])
    if key is None:
        raise CommandRejected(
            "unknown_key",
            f"key id '{shown(body['kid'], 64)}' is not pinned on this device",
            cmd_id=cmd_id,
        )
    try:
        key.verify(base64.b64decode(sig, validate=True), canonical(body))
    # UnicodeEncodeError is a ValueError
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        raise CommandRejected("bad_signature", cmd_id=cmd_id) from None


def sign_command(
    key: Ed25519PrivateKey,
    kid: str,
    device: str,
    cmd: str,
    args: dict,
    *,
    now: float,
    ttl_s: float = 30.0,
    cmd_id: str | None = None,
    nonce: str | None = None,
) -> dict:
    body = {
        "v": 1,
        "cmd": cmd,
        "args": args,
        "device": device,
        "id": cmd_id or secrets.token_hex(16),
        "iat": now,
        "exp": now + ttl_s,
        "nonce": nonce or secrets.token_hex(16),
    }
    return sign(key, kid, body)


ALL_DEVICES = "*"


def sign_change(
    key: Ed25519PrivateKey, kid: str, change: dict, *, site: str, device: str = ALL_DEVICES
) -> dict:
    """An enrollment change signed for ``site`` and one ``device`` (default: every device of it)."""
    return sign(key, kid, {**change, "site": site, "device": device})


def verify_change(keys: dict[str, Ed25519PublicKey], body: dict, *, site: str, device: str) -> None:
    """CommandRejected unless the change is signed by a pinned key for this site and device."""
    if not body.get("sig"):
        raise CommandRejected("unsigned")
    for field in ("kid", "site", "device"):
        if not isinstance(body.get(field), str):
            raise CommandRejected("malformed", f"field '{field}' missing or not text")
    check_signature(keys, body)
    if body["site"] != site:
        raise CommandRejected(
            "wrong_site", f"for site '{shown(body['site'], 40)}', this is '{site}'"
        )
    if body["device"] not in (ALL_DEVICES, device):
        raise CommandRejected(
            "wrong_device", f"for '{shown(body['device'], 40)}', this is '{device}'"
        )


class NonceStore(Protocol):
    def claim(self, nonce: str, exp: float, iat: float, forget_before: float) -> bool:
        """True the first time ``nonce`` is seen: it is remembered with ``exp`` and the
        high-water mark of accepted issue times raised to ``iat``, in one step; nonces whose
        ``exp`` is before ``forget_before`` are forgotten. False for a nonce seen before."""

    def newest_iat(self) -> float | None:
        """The highest ``iat`` ever claimed (persisted by the device's store), None if none."""


class MemoryNonceStore:
    """For tests and the central tool; the device uses its SQLite store (`Store.claim`)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._newest: float | None = None

    def claim(self, nonce: str, exp: float, iat: float, forget_before: float) -> bool:
        self._seen = {n: e for n, e in self._seen.items() if e >= forget_before}
        if nonce in self._seen:
            return False
        self._seen[nonce] = exp
        self._newest = iat if self._newest is None else max(self._newest, iat)
        return True

    def newest_iat(self) -> float | None:
        return self._newest


class ClockGuard:
    """Notices the device's wall clock going backwards, which would re-open replays: a Pi
    without an RTC boots with fake-hwclock's last saved time, and plain NTP is unauthenticated.

    Within a process the wall clock is compared with the monotonic clock (which no one can set):
    if ``wall - monotonic`` falls more than ``skew_s`` below the highest value seen, the wall
    clock went back. Across restarts the store's high-water mark of accepted issue times does
    the same job: a clock more than ``skew_s`` behind the newest accepted command is wrong.
    Trust comes back when the clock has caught up with that mark and, after a jump within the
    process, when the centre's signed time confirms it: a verified command newer than any
    accepted so far (so not a captured one) whose issue time agrees with the device clock.
    """

    def __init__(self, skew_s: float, monotonic: Callable[[], float] = time.monotonic):
        self.skew_s = skew_s
        self.monotonic = monotonic
        self._offset: float | None = None  # highest wall - monotonic seen
        self.jumped: float | None = None  # seconds the wall clock went back, until re-trusted
        self._said: str | None = None

    def problem(self, now: float, newest_iat: float | None) -> str | None:
        """Why the wall clock ``now`` cannot be trusted for time-based decisions, or None."""
        offset = now - self.monotonic()
        if self._offset is None or offset > self._offset:
            self._offset = offset
        elif offset < self._offset - self.skew_s:
            self.jumped = self._offset - offset
        why = None
        if self.jumped is not None:
            why = f"the wall clock went back {self.jumped:.0f} s (monotonic clock)"
        elif newest_iat is not None and now < newest_iat - self.skew_s:
            why = f"the wall clock is {newest_iat - now:.0f} s behind the newest accepted command"
        if why is not None and self._said is None:
            log.error("%s: time-based commands are refused until the clock is trusted again "
                      "(see docs/mqtt.md, Clock)", why)
        self._said = why
        return why

    def confirmed(self, now: float) -> None:
        """The centre's signed time agrees with ``now``: trust the wall clock from here on."""
        if self.jumped is not None:
            log.warning(
                "wall clock confirmed by a signed command from the centre; commands accepted again"
            )
        self.jumped = None
        self._said = None
        self._offset = now - self.monotonic()


class Verifier:
    def __init__(
        self,
        keys: dict[str, Ed25519PublicKey],
        device: str,
        nonces: NonceStore,
        *,
        max_ttl_s: float = 300.0,
        skew_s: float = 30.0,
        clock_guard: ClockGuard | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.keys = keys
        self.device = device
        self.nonces = nonces
        self.max_ttl_s = max_ttl_s
        self.skew_s = skew_s
        self.clock = clock_guard or ClockGuard(skew_s, monotonic)
        self.monotonic = self.clock.monotonic
        # nonces claimed by this process, kept for the longest TTL on the monotonic clock
        # whatever the wall clock and the store's pruning do
        self._recent: collections.OrderedDict[str, float] = collections.OrderedDict()

    def verify(self, payload: bytes | dict, now: float) -> dict:
        """The verified body, or CommandRejected. Cheap checks first (size and depth bounded by
        the caller, schema), then the signature, then time; the nonce is claimed last, so a
        forged message cannot burn the nonce of a genuine one."""
        body = None
        try:
            body = load_json(payload) if isinstance(payload, (bytes, bytearray)) else payload
            if not isinstance(body, dict):
                raise Refused("malformed", "not a JSON object")
            cmd = validated(Command, body)
        except Refused as exc:
            raise CommandRejected(exc.reason, exc.detail, cmd_id=_token_of(body)) from None
        check_signature(self.keys, body, cmd.id)
        if cmd.device != self.device:
            raise CommandRejected(
                "wrong_device", f"for '{cmd.device}', this is '{self.device}'", cmd_id=cmd.id
            )
        newest = self.nonces.newest_iat()
        untrusted = self.clock.problem(now, newest)
        if untrusted is not None:
            proof = (newest is None or cmd.iat > newest) and abs(cmd.iat - now) <= self.skew_s
            if not proof or self.clock.jumped is None:
                raise CommandRejected("clock_untrusted", untrusted, cmd_id=cmd.id)
            self.clock.confirmed(now)
        if now > cmd.exp:
            raise CommandRejected("expired", f"{now - cmd.exp:.0f} s ago", cmd_id=cmd.id)
        if cmd.iat > now + self.skew_s:
            raise CommandRejected(
                "not_yet_valid", f"issued {cmd.iat - now:.0f} s in the future", cmd_id=cmd.id
            )
        if cmd.exp - cmd.iat > self.max_ttl_s:
            raise CommandRejected(
                "too_long_lived",
                f"valid {cmd.exp - cmd.iat:.0f} s > {self.max_ttl_s:g} s",
                cmd_id=cmd.id,
            )
        if newest is not None and cmd.iat < newest - self.max_ttl_s:
            raise CommandRejected(
                "stale",
                f"issued {newest - cmd.iat:.0f} s before the newest accepted command",
                cmd_id=cmd.id,
            )
        mono = self.monotonic()
        while (
            self._recent and next(iter(self._recent.values())) < mono - self.max_ttl_s - self.skew_s
        ):
            self._recent.popitem(last=False)
        forget_before = max(newest or cmd.iat, cmd.iat) - self.max_ttl_s - self.skew_s
        if cmd.nonce in self._recent or not self.nonces.claim(
            cmd.nonce, cmd.exp, cmd.iat, forget_before
        ):
            raise CommandRejected("replayed", f"nonce {cmd.nonce} already used", cmd_id=cmd.id)
        self._recent[cmd.nonce] = mono
        return body


def _token_of(body: object) -> str | None:
    """The command id of a message refused before its schema was checked, when it is one."""
    cid = body.get("id") if isinstance(body, dict) else None
    return cid if is_token(cid) else None
