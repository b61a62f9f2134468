"""systemd integration without dependencies: sd_notify, journald-priority log lines, and the
daemon's logging setup (JSON lines and a rotated file when `[logging]` asks)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import sys
from typing import ClassVar

from gatectl.config.base import ConfigError
from gatectl.config.site import LoggingConfig


def sd_notify(message: str) -> bool:
    """Send READY=1 / WATCHDOG=1 / STATUS=... to systemd; False when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(message.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, the interval at which systemd must hear from us; None if unset."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    return int(usec) / 2e6


class JournalFormatter(logging.Formatter):
    """``<N>`` priority prefixes let journald file each line at its level; journald adds times."""

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        """One line per journal line, each with the record's priority: a traceback
        (``log.exception``) stays with its message at its level instead of being dropped."""
        priority = self.PRIORITY.get(record.levelno, 6)
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line (ts, level, logger, msg, exc) for log shippers; a traceback is
    the ``exc`` field of its record's line, not lines of its own."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str, cfg: LoggingConfig | None = None) -> None:
    """stderr (journald's priorities when systemd reads it), plus the ``[logging]`` file of the
    daemon when configured, in its format."""
    fmt = cfg.format if cfg is not None else "text"
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    elif fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT, "%H:%M:%S"))
    handlers: list[logging.Handler] = [handler]
    if cfg is not None and cfg.file is not None:
        try:
            cfg.file.parent.mkdir(parents=True, exist_ok=True)
            file = logging.handlers.RotatingFileHandler(
                cfg.file, maxBytes=int(cfg.max_mb * 2**20), backupCount=cfg.backups,
                encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"logging.file: {cfg.file}: cannot write ({exc.strerror or exc})"]
                              ) from None
        file.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT))
        handlers.append(file)
    root = logging.getLogger()
    for old in root.handlers:
        if old not in handlers:
            old.close()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
