"""The page's password: an scrypt hash in the config (never the password), checked at a bounded
rate, and short-lived session tokens held in memory (a restart logs everyone out)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from gatectl.core.errors import UsageError

SCRYPT_LOG2_N = 14  # 16 MiB and ~50 ms per check on a Pi-class CPU: cheap to use, dear to guess
SCRYPT_R, SCRYPT_P = 8, 1
MAX_PASSWORD = 1024  # characters; a longer "password" is input to refuse, not to hash
MAX_SESSIONS = 64


def hash_password(password: str, log2_n: int = SCRYPT_LOG2_N) -> str:
    """``scrypt$<log2 n>$<r>$<p>$<salt>$<key>``: what `[status].password_hash` takes."""
    if not password:
        raise UsageError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"the password is longer than {MAX_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    key = _derive(password, salt, log2_n, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${log2_n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a hash the config schema has already checked)."""
    if len(password) > MAX_PASSWORD:
        return False
    _, log2_n, r, p, salt, key = stored.split("$")
    expected = base64.b64decode(key)
    got = _derive(password, base64.b64decode(salt), int(log2_n), int(r), int(p))
    return hmac.compare_digest(got, expected)


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + (1 << 20), dklen=32)


class Sessions:
    """Random tokens handed out at login; at most MAX_SESSIONS, the oldest dropped first."""

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.monotonic):
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._tokens: OrderedDict[str, float] = OrderedDict()  # token -> expiry
        self._lock = threading.Lock()

    def new(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = self.clock() + self.lifetime_s
            while len(self._tokens) > MAX_SESSIONS:
                self._tokens.popitem(last=False)
        return token

    def valid(self, token: str | None) -> bool:
        if not token or len(token) > 64:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is not None and expiry < self.clock():
                del self._tokens[token]
                expiry = None
        return expiry is not None

    def end(self, token: str | None) -> None:
        with self._lock:
            self._tokens.pop(token or "", None)
