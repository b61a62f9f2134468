"""The relay dialects gatectl speaks: one line each. The board config union (`gatectl.config`),
the port thread and ``gatectl board-sim`` know a dialect only through this table."""

from __future__ import annotations

from gatectl.hw.serial import lcus, modbus
from gatectl.hw.serial.dialect import Dialect, SerialBoardConfig

DIALECTS: dict[str, type[Dialect]] = {d.driver: d for d in (
    modbus.ModbusDialect,
    lcus.LcusDialect,
)}


def dialect_for(cfg: SerialBoardConfig) -> Dialect:
    """The dialect a board's config asks for, built from that config."""
    try:
        return DIALECTS[cfg.driver](cfg)
    except KeyError:
        known = ", ".join(DIALECTS)
        raise ValueError(f"no relay dialect '{cfg.driver}' (known: {known})") from None
