"""Central sync over MQTT 5: broker, TLS, credentials, the centre's command keys, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from gatectl.config.base import Name, Strict, file_problem

SnapshotKind = Literal["alert", "denied", "granted", "control", "system"]
DEFAULT_SNAPSHOT_KINDS: tuple[SnapshotKind, ...] = ("alert", "denied")


def snapshot_kind(kind: str, decision: str | None) -> str:
    """What `snapshot_kinds` calls an event: ``alert`` (an alert event or decision),
    ``denied`` / ``granted`` (an access decision), else the event's kind (``control``...)."""
    if kind == "alert" or decision == "alert":
        return "alert"
    if decision in ("denied", "granted"):
        return decision
    return kind


class TlsConfig(Strict):
    """Broker TLS. ``ca`` alone: server authentication; with ``cert`` and ``key``: mutual TLS
    (the broker can take the certificate's CN as the device's user name for its ACL)."""

    ca: Path = Field(description="CA certificate (PEM) the broker's certificate must chain to.")
    cert: Path | None = Field(None, description="Client certificate (PEM), with key: mutual TLS.")
    key: Path | None = Field(None, description="Client private key (PEM) of cert.")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        return self


class SyncConfig(Strict):
    """Central sync over MQTT 5 (paho-mqtt). Offline-first: everything goes through the durable
    outbox; the device works the same with the broker down."""

    enabled: bool = Field(False, description="Sync with the centre over MQTT 5.")
    host: str = Field(
        "127.0.0.1", min_length=1, max_length=253, description="Broker host name or address."
    )
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883, 8883 for TLS).")
    prefix: str = Field(
        "gatectl",
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        description="Topic root; the tree is <prefix>/v1/<site>/<device>/...",
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="Default: gatectl-<site>-<device>."
    )
    username: str | None = Field(
        None, min_length=1, max_length=128, description="Broker user (the device's ACL)."
    )
    password_file: Path | None = Field(
        None, description="File holding the broker password (not in this file)."
    )
    tls: TlsConfig | None = Field(None, description="Broker TLS (ca; cert and key for mutual TLS).")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive, 5-600 s.")
    session_expiry_s: int = Field(
        7 * 86400,
        ge=0,
        le=90 * 86400,
        description="Broker keeps our commands this long while offline (<= 90 days).",
    )
    health_interval_s: float = Field(
        30.0, ge=1, le=3600, description="Status (health) publish period, 1-3600 s."
    )
    max_inflight: int = Field(
        200, ge=1, le=65535, description="Published but not yet acknowledged."
    )
    outbox_max: int = Field(
        200_000,
        ge=50_000,
        le=10_000_000,
        description="Entries kept while offline (50k-10M); beyond, oldest dropped.",
    )
    snapshots: bool = Field(True, description="Publish snapshot JPEGs on their own topic.")
    snapshot_kinds: list[SnapshotKind] = Field(
        default_factory=lambda: list(DEFAULT_SNAPSHOT_KINDS),
        max_length=5,
        description="Events whose snapshot goes to the centre: alert, denied, granted, control, "
        "system. Default alerts and denials: a granted pass's face stays on the device.",
    )
    blur_others: bool = Field(
        False,
        description="Blur every face but the subject's (the largest, on a face gate's event; "
        "none kept on other events) in uploaded snapshots; the stored one is unchanged.",
    )
    command_keys: dict[Name, str] = Field(
        default_factory=dict,
        max_length=16,
        description="Key id -> Ed25519 public key (base64 of the raw 32 bytes, or PEM) allowed to "
        "sign commands.",
    )
    ack_timeout_s: float = Field(
        60.0, ge=1, le=3600,
        description="An outbox row the broker took but the centre has not confirmed (ack topic) "
        "within this is sent again; the wait doubles per attempt up to 32 x. Rows are deleted only "
        "on the centre's ack.",
    )
    command_max_ttl_s: float = Field(
        300.0, gt=0, le=86400, description="Longest validity a command may claim (<= 1 day)."
    )
    clock_skew_s: float = Field(
        30.0, ge=0, le=3600, description="Clock difference to the centre tolerated, 0-3600 s."
    )
    max_command_bytes: int = Field(
        16_384,
        ge=1024,
        le=1 << 20,
        description="Larger messages on the cmd topic are refused unread.",
    )
    max_templates: int = Field(
        10, ge=1, le=100, description="Templates per person accepted in one enrollment."
    )
    max_enroll_bytes: int | None = Field(
        None,
        ge=4096,
        le=64 << 20,
        description="Larger enrollment messages are refused unread; default: max_templates x "
        "embedding size.",
    )
    max_json_depth: int = Field(
        16, ge=4, le=64, description="Deeper-nested inbound JSON is refused unparsed."
    )
    refusals_per_s: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Refused messages logged (and answered) per second per topic.",
    )
    refusal_burst: int = Field(
        10, ge=1, le=1000, description="Refusals logged at once before the rate applies."
    )

    @field_validator("command_keys")
    @classmethod
    def _keys_load(cls, keys: dict[str, str]) -> dict[str, str]:
        from gatectl.core.keys import load_public_key

        for kid, text in keys.items():
            try:
                load_public_key(text)
            except ValueError as exc:
                raise ValueError(f"key '{kid}': {exc}") from None
        return keys

    def missing_files(self) -> list[str]:
        """The broker password and TLS files that are absent or unreadable, one line each."""
        named = [("sync.password_file", self.password_file)]
        if self.tls is not None:
            named += [(f"sync.tls.{k}", getattr(self.tls, k)) for k in ("ca", "cert", "key")]
        return [
            line
            for key, path in named
            if path is not None and (line := file_problem(key, path, file=True))
        ]

    @model_validator(mode="after")
    def _password_needs_user(self) -> SyncConfig:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file needs username")
        return self
