"""A real Mosquitto of the tests' own, on a free port, that fault tests can stop, kill and
restart (the machine's broker on 1883 is left alone).

Usage::

    from tests.broker import Broker, make_pki, free_port

    with Broker(tmp_path / "broker") as broker:      # start() ... stop()
        ...connect to broker.host, broker.port...
        broker.stop(kill=True)                       # a crash: no final save
        broker.restart()                             # same port, same persistence folder

Things learnt from mosquitto 2.0.11 that shape the config (see ``Broker._config``):

* Run as root it switches to the ``mosquitto`` user unless told ``user root``; it then keeps
  running but cannot write its persistence file into a root-owned 0700 test folder (it only logs
  "Error saving in-memory database ... Permission denied"), so persistence would silently not
  work. Hence ``user root`` whenever we are root.
* ``max_queued_messages`` defaults to 1000 per client, and 0 means "no maximum";
  ``max_queued_bytes`` 0 is also "no maximum" (its default). Both are set to 0 so a persistent
  session can hold tens of thousands of QoS 1 messages for an offline subscriber.
* ``persistence_location`` is joined to ``mosquitto.db`` by plain string concatenation, so it
  needs its trailing ``/``.
* It opens its listen sockets *before* loading the TLS files, so a port that accepts does not
  mean a broker that will stay up (a missing cafile makes it exit right after); `start` waits
  for its "mosquitto version X running" log line as well.
* ``autosave_interval 1`` saves the whole in-memory database (written to ``mosquitto.db.new``,
  then renamed) once a second, so a SIGKILL loses at most about a second of changes. A SIGTERM
  always saves on the way out. (``autosave_on_changes true`` would instead save after every N
  changes, which with N=1 rewrites the entire database for every queued message.)
"""

from __future__ import annotations

import atexit
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
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
LOG_NAME = "mosquitto.log"  # mosquitto's own log (log_dest file)
OUT_NAME = "mosquitto.out"  # the process's stdout/stderr (config errors land here)
RUNNING = " running"  # mosquitto logs "mosquitto version X running" once fully configured


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def mosquitto_path() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(path, os.X_OK):
        raise RuntimeError("mosquitto not found: apt-get install mosquitto")
    return path


# ---------------------------------------------------------------------------------------------
# Test PKI


@dataclass
class Pki:
    """PEM files of a throwaway PKI. ``other_ca`` is an unrelated CA, for "wrong CA" tests."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    ca_key: Path | None = None  # to issue more certificates (`issue`)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: x509.Certificate | None, issuer_key, *,
          ca: bool = False, san: list | None = None,
          usage: list | None = None, expired: bool = False) -> x509.Certificate:
    """One certificate, self-signed when ``issuer`` is None.

    It carries the extensions that strict verifiers (OpenSSL's X509_STRICT, which Python 3.13's
    ``ssl.create_default_context`` turns on) insist on: key usage and subject/authority key ids.
    """
    now = datetime.now(timezone.utc) - (timedelta(days=60) if expired else timedelta(0))
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = (x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()) if issuer is None
           else x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
               issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value))
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject))
         .issuer_name(_name(subject) if issuer is None else issuer.subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(days=1))
         .not_valid_after(now + timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(ski, critical=False)
         .add_extension(aki, critical=False))
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def make_pki(folder: Path, client_cn: str = "dev1") -> Pki:
    """A test CA, a server certificate for localhost/127.0.0.1 and a client certificate with
    CN ``client_cn`` (which the broker takes as the username when it requires certificates),
    plus an unrelated CA. EC P-256 keys; valid from a day ago to 30 days ahead."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("gatectl test CA", ca_key, None, ca_key, ca=True)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("localhost", server_key, ca, ca_key,
                   san=[x509.DNSName("localhost"), x509.IPAddress(IPv4Address(HOST))],
                   usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(client_cn, client_key, ca, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])

    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("someone else's CA", other_key, None, other_key, ca=True)
    return Pki(ca=_write_cert(folder / "ca.pem", ca),
               server_cert=_write_cert(folder / "server.pem", server),
               server_key=_write_key(folder / "server.key", server_key),
               client_cert=_write_cert(folder / "client.pem", client),
               client_key=_write_key(folder / "client.key", client_key),
               other_ca=_write_cert(folder / "other-ca.pem", other),
               ca_key=_write_key(folder / "ca.key", ca_key))


def issue(pki: Pki, name: str, folder: Path, *, server_names: list[str] | None = None,
          expired: bool = False) -> tuple[Path, Path]:
    """Another certificate from the test CA: a client certificate with CN ``name``, or with
    ``server_names`` a server certificate for those DNS names (for hostname-mismatch tests);
    ``expired`` makes one that ended a month ago. Returns (cert, key) paths in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    if server_names:
        cert = _cert(server_names[0], key, ca, ca_key, san=[x509.DNSName(n) for n in server_names],
                     usage=[ExtendedKeyUsageOID.SERVER_AUTH], expired=expired)
    else:
        cert = _cert(name, key, ca, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH], expired=expired)
    stem = name.replace("/", "_")
    return _write_cert(folder / f"{stem}.pem", cert), _write_key(folder / f"{stem}.key", key)


# ---------------------------------------------------------------------------------------------
# The broker


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False

_live: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    """A test that fails before its stop() must not leave a mosquitto behind the test run."""
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Broker:
    """One mosquitto process with its config, log and persistence in ``folder``."""

    def __init__(self, folder: Path, *, port: int | None = None, tls: Pki | None = None,
                 require_certificate: bool = False, password_file: Path | None = None,
                 acl_file: Path | None = None, server_cert: tuple[Path, Path] | None = None):
        """``acl_file``: a Mosquitto ACL file (config/mosquitto-acl.conf); ``server_cert``:
        (cert, key) to serve instead of the PKI's own (an expired or misnamed one)."""
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = port or free_port()
        self.tls = tls
        self.require_certificate = require_certificate
        self.password_file = password_file
        self.acl_file = acl_file
        self.server_cert = server_cert
        self.proc: subprocess.Popen | None = None

    @property
    def conf_path(self) -> Path:
        return self.folder / "mosquitto.conf"

    @property
    def db_path(self) -> Path:
        return self.folder / "mosquitto.db"

    def _config(self) -> str:
        lines = []
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto` and cannot save the db
        lines += [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.password_file or self.require_certificate else 'true'}",
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"log_dest file {self.folder / LOG_NAME}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",  # its "running" line: listeners open before TLS files load
        ]
        if self.password_file is not None:
            lines.append(f"password_file {Path(self.password_file).resolve()}")
        if self.acl_file is not None:
            lines.append(f"acl_file {Path(self.acl_file).resolve()}")
        if self.tls is not None:
            cert, key = self.server_cert or (self.tls.server_cert, self.tls.server_key)
            lines += [f"cafile {self.tls.ca}",
                      f"certfile {cert}",
                      f"keyfile {key}",
                      f"require_certificate {'true' if self.require_certificate else 'false'}"]
            if self.require_certificate:
                lines.append("use_identity_as_username true")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start mosquitto in the foreground and return once the port accepts
        TCP connections. Raises RuntimeError with the log's tail if it exits or never listens."""
        if self.running():
            return
        if _accepts(self.host, self.port):  # the probe below could not tell it from ours
            raise RuntimeError(f"port {self.port} on {self.host} is already in use")
        self.conf_path.write_text(self._config())
        runs = self.log().count(RUNNING)
        with open(self.folder / OUT_NAME, "ab") as out:
            self.proc = subprocess.Popen([mosquitto_path(), "-c", str(self.conf_path)],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.folder)
        _live.add(self.proc)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                _live.discard(self.proc)
                raise RuntimeError(f"mosquitto exited with {code} on port {self.port}:\n"
                                   f"{self._tail()}")
            if _accepts(self.host, self.port) and self.log().count(RUNNING) > runs:
                if self.proc.poll() is None:
                    return
                continue  # it exited meanwhile: report that above
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"mosquitto not listening on {self.host}:{self.port} "
                                   f"after {timeout} s:\n{self._tail()}")
            time.sleep(0.02)

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """SIGTERM and wait (mosquitto saves its persistence on the way out), or SIGKILL when
        ``kill`` (a crash: whatever the last autosave missed is lost). Does nothing if it is
        not running. On return the process is gone, so the port can be bound again."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _live.discard(proc)

    def restart(self) -> None:
        """Graceful stop, then start again on the same port with the same persistence."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """mosquitto's log followed by anything it printed on stdout/stderr, all runs."""
        parts = []
        for name in (LOG_NAME, OUT_NAME):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"Broker({self.host}:{self.port}, {state}, {self.folder})"
