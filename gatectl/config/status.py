"""The local status page (`gatectl.web`): off by default, loopback by default; anywhere else
only behind a password (its scrypt hash, never the password) over HTTPS."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator

from gatectl.config.base import Strict, file_problem

# scrypt$<log2 n>$<r>$<p>$<salt, base64>$<key, base64>: what `gatectl status hash-password` prints
PASSWORD_HASH = r"^scrypt\$1[4-6]\$8\$1\$[A-Za-z0-9+/]{22,44}={0,2}\$[A-Za-z0-9+/]{43}=$"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


class StatusConfig(Strict):
    """``[status]``: what the page shows (live views, events, states, health) is for the
    compound's staff; residents' faces and names are on it, so it is never open to the network."""

    enabled: bool = Field(False, description="Serve the status page, /healthz and /metrics.")
    host: str = Field(
        "127.0.0.1", max_length=64,
        description="Address to listen on: an IP address or localhost. Anything but loopback "
        "needs password_hash, tls_cert and tls_key.",
    )
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: any free port, for tests).")
    password_hash: str | None = Field(
        None, max_length=200, pattern=PASSWORD_HASH,
        description="The scrypt hash `gatectl status hash-password` prints (never the password).",
    )
    tls_cert: Path | None = Field(None, description="HTTPS certificate chain (PEM).")
    tls_key: Path | None = Field(None, description="HTTPS private key (PEM) of tls_cert.")
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long a login lasts, up to 30 days."
    )
    frame_interval_ms: int = Field(
        500, ge=100, le=10_000,
        description="How often the page fetches a camera's annotated frame (100-10000 ms).",
    )
    events_shown: int = Field(20, ge=1, le=200, description="Recent events on the page (1-200).")

    @field_validator("host")
    @classmethod
    def _address(cls, v: str) -> str:
        if v != "localhost":
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError("not an IP address (or localhost)") from None
        return v

    @property
    def protected(self) -> bool:
        """Login and HTTPS: bound to an address other machines can reach."""
        return not is_loopback(self.host)

    def problems(self) -> list[str]:
        """What a non-loopback page lacks, one line per missing key."""
        if not self.enabled or not self.protected:
            return []
        why = f"required when status.host = {self.host!r} (not loopback)"
        return [f"status.{key}: {why}" for key in ("password_hash", "tls_cert", "tls_key")
                if getattr(self, key) is None]

    def missing_files(self) -> list[str]:
        """The certificate and key files, when the page serves HTTPS."""
        if not self.enabled:
            return []
        return [p for key in ("tls_cert", "tls_key") if (path := getattr(self, key)) is not None
                and (p := file_problem(f"status.{key}", path, file=True)) is not None]
