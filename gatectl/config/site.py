"""Who the device is and how it keeps its data: device, models, storage, enrollment, policy,
clock."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gatectl.config.base import Name, Strict
from gatectl.config.gates import (
    FaceQuality,
)


class DeviceConfig(Strict):
    id: Name = Field(
        "gate-01", description="This device's id (1-64 of A-Z a-z 0-9 _ . -), unique in the site."
    )
    site: Name = Field("default-site", description="The compound's id (1-64 of A-Z a-z 0-9 _ . -).")


class ModelsConfig(Strict):
    dir: Path | None = Field(
        None, description="Folder holding the ONNX weights; default: the bundled models/."
    )
    intra_op_threads: int = Field(2, ge=1, le=64, description="onnxruntime threads per session.")
    embedding_backend: Literal["mobilefacenet", "insightface"] = Field(
        "mobilefacenet",
        description="mobilefacenet (bundled, Apache-2.0) or insightface (a pack of your own).",
    )
    embedding_flip: bool = Field(
        True,
        description="MobileFaceNet: embed the face and its mirror image and sum (more accurate, ~1 "
        "ms).",
    )
    insightface_pack: Path | None = Field(
        None,
        description="insightface model-pack folder; only with embedding_backend='insightface'.",
    )

    @model_validator(mode="after")
    def _pack_needed(self) -> ModelsConfig:
        if self.embedding_backend == "insightface" and self.insightface_pack is None:
            raise ValueError("embedding_backend 'insightface' needs insightface_pack = <folder>")
        return self


SYSTEM_DIRS = ("bin", "boot", "dev", "etc", "lib", "lib64", "proc", "run", "sbin", "sys", "usr")


class StorageConfig(Strict):
    state_dir: Path | None = Field(
        None,
        description="Absolute state folder of the service and the CLI (else $STATE_DIRECTORY, then "
        "/var/lib/gatectl); the relative paths below are inside it.",
    )
    database: Path = Field(
        Path("gatectl.db"),
        description="SQLite file: relative (inside the state folder) or absolute, never '..', a "
        "system folder or a device.",
    )
    snapshots: Path = Field(
        Path("snapshots"), description="Snapshot folder, same rules as database."
    )
    retention_days: float = Field(
        30, ge=1, le=3650, description="Snapshots are kept this long (1-3650 days)."
    )
    retention_max_mb: float = Field(
        2048, ge=10, le=10_000_000, description="... and within this size (10 MB-10 TB)."
    )
    snapshot_jpeg_quality: int = Field(
        85, ge=30, le=100, description="JPEG quality of snapshots, 30-100."
    )
    keep_enrollment_photos: bool = Field(
        False, description="GB/T 35273: enrollment photos are discarded once templates exist."
    )
    event_retention_days: float = Field(
        180, ge=1, le=3650,
        description="Event rows older than this are deleted; access events are kept exactly this "
        "long (180 days: the usual requirement for access records in China).",
    )
    event_max_rows: int = Field(
        1_000_000, ge=1000, le=50_000_000,
        description="Above this many event rows the oldest non-access events are deleted; access "
        "events younger than event_retention_days are never deleted to meet it.",
    )
    lock_wait_ms: int = Field(
        300, ge=20, le=2000,
        description="Longest a decision waits for the database write lock (a backup, a sqlite3 "
        "shell) before its event goes to the spool and the door opens anyway.",
    )
    spool_max_kb: int = Field(
        1024, ge=16, le=65536,
        description="Size cap of the fsynced spool of events the store could not take (about 3 "
        "events per KB); beyond it an event reaches only the journal (EVENT NOT STORED).",
    )

    @field_validator("state_dir", "database", "snapshots")
    @classmethod
    def _safe_location(cls, p: Path | None, info: ValidationInfo) -> Path | None:
        """Where the daemon writes (as root on some sites): never out of the state folder by
        '..', never into a system folder (a snapshot folder of /etc/cron.d runs code), never a
        device (a database of /dev/null loses every event)."""
        if p is None:
            return p
        if ".." in p.parts:
            raise ValueError(
                f"'{p}': '..' is not allowed; give a path inside the state folder or an "
                "absolute one"
            )
        if info.field_name == "state_dir" and not p.is_absolute():
            raise ValueError(f"'{p}': must be an absolute folder")
        if p.is_absolute() and (p == Path("/") or p.parts[1] in SYSTEM_DIRS):
            raise ValueError(
                f"'{p}': a system folder ({', '.join('/' + d for d in SYSTEM_DIRS)}) is not a "
                "place for gatectl's data"
            )
        if info.field_name == "database" and p.exists() and not p.is_file():
            raise ValueError(f"'{p}': exists and is not a regular file")
        return p


class EnrollmentConfig(Strict):
    """Enrollment is stricter than a gate: a poor template hurts every later pass."""

    quality: FaceQuality = Field(
        FaceQuality(min_face_px=80, min_sharpness=30.0, max_yaw=0.35, min_detail=0.55),
        description="Stricter than a gate's: 80 px, sharper, frontal, not enlarged.",
    )
    detect_threshold: float = Field(
        0.8, ge=0.3, le=1.0, description="YuNet score for an enrollment photo, 0.3-1."
    )
    liveness: bool = Field(True, description="Refuse photos of photos and screens at enrollment.")
    liveness_threshold: float = Field(
        0.5, ge=0.2, le=0.99, description="Fused MiniFASNet p(real), 0.2-0.99."
    )
    duplicate_threshold: float = Field(
        0.40,
        ge=0.25,
        le=0.95,
        description="A new face this close (0.25-0.95) to someone enrolled is refused; also the "
        "same-person check between photos.",
    )
    keep_templates: int = Field(
        3,
        ge=1,
        le=10,
        description="Templates kept per person: the best by quality, near-copies skipped.",
    )


# typed here: mypy cannot see a lambda's list of strings as a list of the Literal
_DEFAULT_ENTRY_CHECKS: list[Literal["account_active"]] = ["account_active"]


class PolicyConfig(Strict):
    reenroll_after_days: float = Field(
        15, ge=1, le=3650, description="No pass for this long -> re-enroll (1-3650 days)."
    )
    entry_checks: list[Literal["account_active"]] = Field(
        default_factory=_DEFAULT_ENTRY_CHECKS.copy, max_length=8,
        description="Pluggable checks run on every otherwise-granted resident.",
    )


class ClockConfig(Strict):
    """Jump detection for devices without an RTC or with a bad NTP server: the wall clock is
    compared with the monotonic clock; time-based rules (snapshot and event retention, the
    re-enrollment rule) do not act on a clock that just jumped (docs/architecture.md)."""

    jump_s: float = Field(
        60, ge=1, le=3600,
        description="A change of wall minus monotonic time larger than this is a clock jump.",
    )
    settle_s: float = Field(
        3600, ge=60, le=7 * 86400,
        description="After a jump the clock is trusted again once it has agreed with the monotonic "
        "clock (no further jump) for this long, or at once when it returns to the pre-jump time "
        "base.",
    )


class LoggingConfig(Strict):
    """Where the daemon's log lines go besides stderr (journald under systemd, with tracebacks
    kept), and in which form. Decisions are logged at INFO with resident ids, never names."""

    format: Literal["text", "json"] = Field(
        "text",
        description="text (one human line) or json (one object per line: ts, level, logger, "
        "msg, exc) for the file, and for stderr when not under journald.",
    )
    file: Path | None = Field(
        None,
        description="Also log to this absolute file (the unit allows /var/log/gatectl/), rotated "
        "at max_mb.",
    )
    max_mb: float = Field(10, ge=0.1, le=1024, description="Rotate the file at this size (MB).")
    backups: int = Field(3, ge=0, le=20, description="Rotated files kept (0-20).")

    @field_validator("file")
    @classmethod
    def _log_file(cls, p: Path | None) -> Path | None:
        """A file the daemon appends to, perhaps as root: absolute, no '..', not a device."""
        if p is None:
            return p
        if not p.is_absolute() or ".." in p.parts:
            raise ValueError(f"'{p}': give an absolute path without '..'")
        if p.parts[1] in {"dev", "proc", "sys"} or (p.exists() and not p.is_file()):
            raise ValueError(f"'{p}': not a regular file")
        return p
