"""PINs: stored only as salted slow hashes, compared in constant time, and guessed at a bounded
rate per door.

scrypt (RFC 7914) with a per-PIN random salt: a PIN has few digits, so a fast hash of it would
fall to a table of every PIN in seconds; scrypt makes each guess cost tens of milliseconds and
16 MiB of memory, on the attacker's side too. The stored text names its parameters, so they can
be raised later without invalidating the PINs already set.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import os

from gatectl.core.errors import UsageError

N, R, P = 2**14, 8, 1  # ~16 MiB, tens of ms on a Pi 4
MAX_N = 2**18  # a stored hash asking for more is not ours: refuse rather than spend the memory
PIN_MIN, PIN_MAX = 4, 12
# the one form `hash_pin` writes (16-byte salt, 32-byte digest, base64): what a replicated PIN
# hash must look like before it is stored (`gatectl.sync.inbound`, the centre's checks)
HASH_PATTERN = (r"^scrypt\$[0-9]{1,7}\$[0-9]{1,2}\$[0-9]\$[A-Za-z0-9+/]{22}==\$"
                r"[A-Za-z0-9+/]{43}=$")
HASH_MAX = 128


def check_pin_text(pin: str) -> str:
    """The PIN digits, or UsageError (never echoing the PIN)."""
    pin = pin.strip()
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        raise UsageError(f"PIN: {PIN_MIN}-{PIN_MAX} digits (0-9) required")
    return pin


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024,
                          dklen=32)


def hash_pin(pin: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(pin, salt, N, R, P)
    return "$".join(["scrypt", str(N), str(R), str(P), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches the stored hash; False for a hash in a form we do not write."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return False
    n, r, p = (int(x) for x in parts[1:4])
    if not (2 <= n <= MAX_N and 1 <= r <= 16 and 1 <= p <= 4):
        return False
    try:
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5],
                                                                                  validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(pin, salt, n, r, p), digest)


class PinGuard:
    """Wrong PINs at one door: after ``max_failures`` within ``window_s`` every PIN is refused,
    without hashing, for ``lockout_s`` (monotonic time). A 4-digit PIN then takes days to guess
    at one door instead of minutes; the lockout is the door's, not a resident's, so a stranger
    typing at random cannot lock a resident out of the other doors."""

    def __init__(self, max_failures: int, window_s: float, lockout_s: float):
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._failures: collections.deque[float] = collections.deque(maxlen=max_failures)
        self.locked_until = float("-inf")
        self.refused_locked = 0  # PINs refused unchecked during lockouts

    def locked(self, now: float) -> bool:
        return now < self.locked_until

    def failed(self, now: float) -> bool:
        """Count one wrong PIN; True when it starts a lockout."""
        self._failures.append(now)
        if len(self._failures) == self.max_failures and now - self._failures[0] <= self.window_s:
            self.locked_until = now + self.lockout_s
            self._failures.clear()
            return True
        return False
