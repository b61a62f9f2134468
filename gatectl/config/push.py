"""Cameras that push their own e-bike detections over HTTP (many elevator AI cameras do).

A pushing camera is a second kind of ``ebike_detected`` contact: a run of signed reports, each
within ``active_s`` of the last, confirms once it has lasted ``confirm_s``, and the same hold,
cap and fire-alarm override apply as for a wired contact. Reports are authenticated with an
HMAC-SHA256 over the body with the camera's own secret: without it a report is refused, since a
forged one could hold a car.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from gatectl.config.base import MAX_ITEMS, Name, Strict


class PushCameraConfig(Strict):
    name: Name = Field(description="The camera's name, as in the URL it posts to.")
    elevator: Name = Field(description="The elevator ([[elevators]] name) the camera is in.")
    secret: str = Field(
        min_length=32,
        max_length=128,
        pattern=r"^[0-9a-fA-F]+$",
        description="Shared HMAC-SHA256 key, 32-128 hex digits (16-64 bytes); generate one with "
        "`python3 -c 'import secrets; print(secrets.token_hex(32))'`.",
    )
    confirm_s: float = Field(
        1.0,
        ge=0.0,
        le=30,
        description="Reports must keep coming this long (0-30 s, first to latest) before the "
        "car is held; 0: one report holds it.",
    )
    active_s: float = Field(
        2.0,
        ge=0.2,
        le=30,
        description="How long (0.2-30 s) one report counts as 'e-bike seen'; a camera that "
        "pushes once a second needs at least 1.",
    )


class PushConfig(Strict):
    """The HTTP listener AI cameras post their e-bike events to (off unless cameras are
    listed and ``enabled``)."""

    enabled: bool = Field(False, description="Listen for camera pushes.")
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=253,
        description="Address to listen on; the cameras' network, e.g. 0.0.0.0 (loopback by "
        "default: nothing listens on the network until asked to).",
    )
    port: int = Field(8471, ge=0, le=65535, description="TCP port (0: any free one, logged).")
    tls_cert: Path | None = Field(None, description="Certificate (PEM) to serve HTTPS, with key.")
    tls_key: Path | None = Field(None, description="Private key (PEM) of tls_cert.")
    max_skew_s: float = Field(
        30.0,
        ge=1,
        le=600,
        description="A report's time may differ this much (1-600 s) from the device's clock; "
        "older ones are refused as replays.",
    )
    max_body: int = Field(
        4096, ge=256, le=65536, description="Largest report body accepted, bytes (256-65536)."
    )
    cameras: list[PushCameraConfig] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Cameras that may push."
    )

    @model_validator(mode="after")
    def _checks(self) -> PushConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        names = [c.name for c in self.cameras]
        if len(names) != len(set(names)):
            raise ValueError("camera names must be unique")
        return self
