"""Why the broker connection fails, in one line naming the setting or file to look at.

TLS and login problems used to fail closed but silently: paho retries for ever and says
nothing. `explain` turns what paho saw (the exception of a failed connect, the CONNACK reason,
the socket error logged before a drop) into one line such as
``MQTT broker mqtt.example.org:8883: certificate not trusted by sync.tls.ca /etc/gatectl/ca.pem
(unable to get local issuer certificate)``. `ProblemLog` logs each distinct problem once and
the same one again only at growing intervals (1 min, doubling to 1 h) with the attempts
counted, so a broker that stays unreachable does not write a line per retry.
`sync.client.probe` connects once for `gatectl doctor`.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable

from gatectl.config.sync import SyncConfig
from gatectl.core.safe_text import shown

log = logging.getLogger("gatectl.sync")


def broker_at(cfg: SyncConfig) -> str:
    return f"MQTT broker {cfg.host}:{cfg.port}"


def _ours(cfg: SyncConfig) -> str:
    if cfg.tls is not None and cfg.tls.cert is not None:
        return f"our client certificate sync.tls.cert {cfg.tls.cert}"
    return "our connection (no client certificate: sync.tls.cert not set)"


def _tls_reason(text: str) -> str:
    """The OpenSSL reason code in a socket error ('[SSL: X] ...' -> 'X'), else the text: a
    broker's refusal then reads the same whether it surfaced in the handshake (an SSLError's
    ``reason``) or, under load, as the error logged when the connection dropped (TLS 1.3 sends
    a client-certificate alert after the client's handshake is done), and is logged once."""
    m = re.search(r"\[SSL: ([A-Z0-9_]+)\]", text)
    return m.group(1) if m else text


def explain(cfg: SyncConfig, exc: BaseException | None = None, refused: str | None = None,
            dropped: str | None = None) -> str:
    """One line for a failed connect (``exc``), a CONNACK refusal (``refused``: the reason
    code's text) or a connection closed before the CONNACK (``dropped``: the socket error paho
    logged, if any)."""
    where = broker_at(cfg)
    ca = f"sync.tls.ca {cfg.tls.ca}" if cfg.tls is not None else "the system CAs"
    if refused is not None:
        text = shown(refused)
        if cfg.username:
            return (
                f"{where} refused the login as sync.username "
                f"'{shown(cfg.username)}' (password from "
                f"sync.password_file {cfg.password_file}): {text}"
            )
        return f"{where} refused the connection of {_ours(cfg)}: {text}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = shown(exc.verify_message or exc)
        if "mismatch" in why.lower():
            return (
                f"{where}: its certificate is not valid for the name in sync.host '{cfg.host}' "
                f"({why})"
            )
        if "expired" in why.lower():
            return f"{where}: its certificate has expired ({why}; checked against {ca})"
        return f"{where}: certificate not trusted by {ca} ({why})"
    if isinstance(exc, ssl.SSLError):
        why = shown(exc.reason or exc)
        low = why.lower()
        if (
            "expired" in low
            or "bad_certificate" in low
            or "unknown_ca" in low
            or "certificate_required" in low
        ):
            return f"{where} refused {_ours(cfg)}: {why}"
        if "wrong_version" in low or "eof" in low or "record" in low or "packet_length" in low:
            return (
                f"{where}: TLS handshake failed ({why}): is sync.port {cfg.port} a "
                "plaintext listener? "
                f"(sync.tls is set)"
            )
        return f"{where}: TLS error ({why})"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError)) and cfg.tls is not None:
        return (
            f"{where}: connection reset during the TLS handshake: "
            f"is sync.port {cfg.port} a plaintext "
            f"listener? (sync.tls is set)"
        )
    if isinstance(exc, socket.gaierror):
        return (
            f"{where}: cannot resolve sync.host '{shown(cfg.host)}' ({shown(exc.strerror or exc)})"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} unreachable: connection refused (nothing listens at sync.host / sync.port)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"{where} unreachable: no answer (timeout; firewall or wrong sync.host?)"
    if isinstance(exc, OSError):
        return f"{where} unreachable: {shown(exc.strerror or exc)}"
    if exc is not None:
        return f"{where}: {type(exc).__name__}: {shown(exc)}"
    said = f" ({shown(dropped)})" if dropped else ""
    if dropped and ("certificate" in dropped.lower() or "alert" in dropped.lower()):
        return f"{where} refused {_ours(cfg)}: {shown(_tls_reason(dropped))}"
    if cfg.tls is None:
        return (
            f"{where} closed the connection before answering{said}: is sync.port {cfg.port} a TLS "
            f"listener? (sync.tls is not set)"
        )
    return (
        f"{where} closed the connection before answering{said}; its log says why (ACL, "
        "certificate, limits)"
    )


class ProblemLog:
    """Each distinct connection problem logged once as an error, the same one again only at
    growing intervals with the number of attempts; ``solved`` ends it."""

    def __init__(self, first_repeat_s: float = 60.0, max_repeat_s: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.first_repeat_s = first_repeat_s
        self.max_repeat_s = max_repeat_s
        self.clock = clock
        self.current: str | None = None
        self.attempts = 0
        self._lock = threading.Lock()
        self._next = 0.0
        self._interval = first_repeat_s

    def report(self, text: str) -> None:
        with self._lock:
            now = self.clock()
            if text != self.current:
                self.current, self.attempts = text, 1
                self._interval = self.first_repeat_s
                self._next = now + self._interval
                line = text
            else:
                self.attempts += 1
                if now < self._next:
                    return
                self._interval = min(2 * self._interval, self.max_repeat_s)
                self._next = now + self._interval
                line = (
                    f"{text} (still failing after {self.attempts} attempts; retrying with backoff)"
                )
        log.error("%s", line)

    def solved(self) -> str | None:
        """The problem that was current, if any; from now on a new one is logged at once."""
        with self._lock:
            was, self.current, self.attempts = self.current, None, 0
        return was
