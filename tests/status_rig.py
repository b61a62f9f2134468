"""What the status page tests share: a self-signed certificate, a password hash, a stand-in
view and a client for the real server."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import numpy as np

from gatectl.domain.records import EventRow
from gatectl.gates.base import GateView, Mark

PASSWORD = "correct horse battery staple"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatectl test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class StandInView:
    """A `StatusView` with one camera whose picture changes on every `step`."""

    def __init__(self, snapshot: Path | None = None):
        self.n = 0
        self.snapshot_file = snapshot
        self.snapshots_asked: list[str] = []  # the ids the server looked up (well-formed only)
        self.event = EventRow("01JTESTEVENT0000000000000A", 1_790_000_000.0, "lobby", "access",
                              "granted", "resident <b>ok</b>", 7, None, 0.81,
                              "2026/01/01/x.jpg" if snapshot else None)

    def step(self) -> None:
        self.n += 1

    def health(self) -> dict[str, Any]:
        return {"cameras": {"lobby": {"state": "running", "fps": 5.0, "outages": 2,
                                      "dropped_stale": 3}},
                "boards": {"main": {"state": "online", "commands_failed": 0}},
                "gates": {"lobby": {"frames": 40 + self.n, "failing": False}},
                "sync": {"connected": True, "outbox": {"pending": 4, "oldest_age_s": 12.5}},
                "controls": {"door:door": "locked"}, "disk_free_mb": 1000, "store_failing": None}

    def cameras(self) -> list[str]:
        return ["lobby"]

    def frame(self, camera: str) -> GateView | None:
        if camera != "lobby":
            return None
        image = np.full((240, 320, 3), (self.n * 37) % 256, np.uint8)
        return GateView(image, float(self.n), (Mark((10, 10, 80, 90), "Rosé 李", "face_known"),
                                               Mark((100, 100, 200, 140), "京A12345", "plate")),
                        ((0.0, 0.0), (300.0, 0.0), (300.0, 200.0)))

    def states(self) -> dict[str, str]:
        return {"door:door": "locked"}

    def events(self, limit: int) -> list[EventRow]:
        return [self.event][:limit]

    def snapshot(self, event_id: str) -> Path | None:
        self.snapshots_asked.append(event_id)
        return self.snapshot_file if event_id == self.event.id else None

    def announcement(self) -> str | None:
        return "no e-bikes in the lift"
