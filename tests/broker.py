"""A real Mosquitto of the tests' own, on a free port, that fault tests can stop, kill and
restart (the machine's broker on 1883 is left alone)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_path() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(path).exists():
        raise RuntimeError("mosquitto not found: apt-get install mosquitto")
    return path


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # an unrelated CA, for "wrong CA" tests


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False,
          san: list | None = None) -> x509.Certificate:
    now = datetime.now(timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path, client_cn: str = "dev1") -> Pki:
    """A test CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatectl test CA")])
    ca = _cert("gatectl test CA", ca_key, ca_name, ca_key, ca=True)
    for name, cn, san in (("server", "localhost", [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
                          ("client", client_cn, None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, ca_name, ca_key, san=san)
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(folder / f"{name}.key", key)
        paths[name] = (folder / f"{name}.pem", folder / f"{name}.key")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else's CA")])
    (folder / "other-ca.pem").write_bytes(
        _cert("someone else's CA", other_key, other_name, other_key, ca=True).public_bytes(serialization.Encoding.PEM))
    return Pki(folder / "ca.pem", *paths["server"], *paths["client"], folder / "other-ca.pem")


class Broker:
    def __init__(self, folder: Path, *, port: int | None = None, tls=None, require_certificate: bool = False,
                 password_file: Path | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tls = tls
        self.require_certificate = require_certificate
        self.password_file = password_file
        self.proc: subprocess.Popen | None = None

    def _conf(self) -> Path:
        lines = [f"listener {self.port} {self.host}",
                 f"allow_anonymous {'false' if self.password_file else 'true'}",
                 "persistence true", f"persistence_location {self.folder}/",
                 "autosave_interval 1", "max_queued_messages 0", "max_queued_bytes 0",
                 f"log_dest file {self.folder}/mosquitto.log", "log_type error", "log_type warning",
                 "log_type notice"]
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.server_cert}", f"keyfile {self.tls.server_key}",
                      f"require_certificate {'true' if self.require_certificate else 'false'}"]
            if self.require_certificate:
                lines.append("use_identity_as_username true")
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        conf = self._conf()
        self.proc = subprocess.Popen([mosquitto_path(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "stderr.log", "ab"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto not listening on {self.port}: {self.log()[-2000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        text = ""
        for name in ("mosquitto.log", "stderr.log"):
            p = self.folder / name
            if p.exists():
                text += p.read_text(errors="replace")
        return text

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
