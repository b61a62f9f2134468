"""The LCUS / CH340 "USB relay" dialect: ``A0 <channel> <op> <sum>`` frames, pure functions.

These modules only latch (no board-timed pulse), never answer a switching command and have no
inputs, so the port thread sends frames blind and times every pulse itself; they are for the
bench and for sites where a relay stuck closed is the safe state. Channels are 1-based on the wire.
"""

from __future__ import annotations

from gatectl.config.hardware import LcusBoardConfig
from gatectl.hw.serial.dialect import Dialect, hexs

HEAD = 0xA0
FRAME_LENGTH = 4
OP_OFF = 0x00
OP_ON = 0x01


class LcusFrameError(ValueError):
    """Bytes that are not a well-formed LCUS switching frame."""


def lcus_frame(channel1: int, on: bool) -> bytes:
    """``A0 ch op sum`` with sum = (0xA0 + ch + op) & 0xFF, e.g. ``A0 01 01 A2`` = relay 1 on."""
    if not 1 <= channel1 <= 0xFF:
        raise ValueError(f"LCUS channel {channel1} out of range 1..255 (channels are 1-based)")
    op = OP_ON if on else OP_OFF
    return bytes([HEAD, channel1, op, (HEAD + channel1 + op) & 0xFF])


def parse_lcus_frame(frame: bytes) -> tuple[int, bool]:
    """(1-based channel, on) of a switching frame; what a simulated module applies."""
    if len(frame) != FRAME_LENGTH or frame[0] != HEAD:
        raise LcusFrameError(f"not an LCUS frame: {hexs(frame)}")
    if (frame[0] + frame[1] + frame[2]) & 0xFF != frame[3]:
        raise LcusFrameError(f"bad LCUS checksum: {hexs(frame)}")
    if frame[2] not in (OP_OFF, OP_ON):
        raise LcusFrameError(f"unsupported LCUS op {frame[2]:02X}")
    return frame[1], frame[2] == OP_ON


class LcusDialect(Dialect):
    """Blind (the protocol's defaults): a frame is all there is, so the port thread neither
    waits for a reply nor reads anything back, and proves the adapter is there by reading."""

    driver = "lcus"

    def __init__(self, cfg: LcusBoardConfig):
        self.cfg = cfg

    def switch(self, channel: int, on: bool) -> bytes:
        return lcus_frame(channel + 1, on)


DIALECT = LcusDialect
