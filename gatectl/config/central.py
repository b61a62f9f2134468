"""The centre's own config (central.toml, `gatectl central serve --config`): not a section of a
device's config - another program, on another machine - but built on the same strict base."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from gatectl.config.base import ConfigError, Name, Strict
from gatectl.config.sync import SyncConfig, TlsConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class CentralBrokerConfig(Strict):
    """The broker (or the broker cluster's load balancer) the workers subscribe through."""

    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883, 8883 for TLS).")
    prefix: str = Field(
        "gatectl",
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        description="Topic root the devices use (<prefix>/v1/<site>/<device>/...).",
    )
    username: str | None = Field(
        None, min_length=1, max_length=128, description="Broker user of the centre's ACL."
    )
    password_file: Path | None = Field(None, description="File holding the broker password.")
    tls: TlsConfig | None = Field(None, description="Broker TLS (ca; cert and key: mutual TLS).")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive, 5-600 s.")

    def sync(self) -> SyncConfig:
        """The same connection as the devices' client takes (`gatectl.sync.client.make_client`)."""
        return SyncConfig(enabled=True, host=self.host, port=self.port, prefix=self.prefix,
                          username=self.username, password_file=self.password_file,
                          tls=self.tls, keepalive_s=self.keepalive_s)


class IngestConfig(Strict):
    """The ingest workers: stateless processes on one MQTT 5 shared subscription."""

    group: Name = Field(
        "gatectl-central", description="Shared subscription group ($share/<group>/...)."
    )
    workers: int = Field(2, ge=1, le=64, description="Worker processes `serve` runs (1-64).")
    session_expiry_s: int = Field(
        3600, ge=60, le=7 * 86400,
        description="The broker keeps a dead worker's unacknowledged messages this long "
        "(60 s - 7 days) for its restart.",
    )
    receive_maximum: int = Field(
        1000, ge=10, le=65535,
        description="Messages in flight to one worker (10-65535): its memory bound.",
    )
    batch: int = Field(500, ge=1, le=10000, description="Messages stored per transaction.")
    resync_every_s: float = Field(
        10.0, ge=0.0, le=3600.0, description="One resync per device per this (0-3600 s)."
    )


class HttpConfig(Strict):
    """The health endpoint (/health) and the Prometheus metrics (/metrics)."""

    host: str = Field("127.0.0.1", min_length=1, max_length=253, description="Listen address.")
    port: int = Field(9464, ge=0, le=65535, description="Listen port (0: any free port).")
    offline_after_s: float = Field(
        300.0, ge=10.0, le=86400.0,
        description="A device silent this long (10 s - 1 day) counts as offline too.",
    )


class RegistryConfig(Strict):
    """Decisions on the devices' enrollment requests."""

    duplicate_threshold: float = Field(
        0.40, ge=0.25, le=0.95,
        description="A new face this close (0.25-0.95) to another resident of the site is "
        "refused.",
    )
    max_device_consent: Literal["none", "device", "building", "site"] = Field(
        "site", description="The widest replication a device's request may ask for."
    )
    device_requests: Literal["own", "refuse"] = Field(
        "own",
        description="own: devices add residents and change those they added; refuse: none.",
    )


class CentralConfig(Strict):
    """central.toml."""

    state_dir: Path = Field(
        Path("/var/lib/gatectl-central"),
        description="Where the SQLite database and the snapshot folder live by default.",
    )
    database: str = Field(
        "sqlite:///central.db", min_length=1, max_length=1000,
        description="sqlite:///<file> (relative to state_dir) or postgresql://user@host/db.",
    )
    snapshots: Path | None = Field(
        None, description="Snapshot folder; default state_dir/snapshots."
    )
    key: Path | None = Field(
        None, description="Ed25519 private key (`gatectl central keygen`) that signs changes."
    )
    kid: Name = Field("central-1", description="Key id the devices pin the key under.")
    sites: list[Name] = Field(
        default_factory=list, max_length=100000,
        description="Sites this centre serves (empty: every site on the broker).",
    )
    broker: CentralBrokerConfig = Field(default_factory=CentralBrokerConfig,
                                        description="The broker.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="The ingest workers.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Health and metrics.")
    registry: RegistryConfig = Field(default_factory=RegistryConfig,
                                     description="Enrollment request decisions.")

    @field_validator("database")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return v

    @property
    def snapshot_dir(self) -> Path:
        return self.snapshots or self.state_dir / "snapshots"


def load_central_config(path: Path) -> CentralConfig:
    """central.toml, or ConfigError with one ``key.path: message`` line per problem."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not TOML ({exc})"]) from None
    try:
        return CentralConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([
            f"{'.'.join(str(p) for p in e['loc']) or path}: {e['msg']}" for e in exc.errors()
        ]) from None
