"""The Modbus RTU dialect (Waveshare-style relay boards): frames, reply validation, no I/O.

Hand-framed rather than pymodbus because the boards' useful commands are vendor values on
FC 05 (Waveshare "flash on" = coil 0x0200 + channel, value in 100 ms units) that a generic
encoder cannot express, and because every byte here must match the board manuals exactly
(the tests check the published frames). The port thread (`port.SerialBoard`) asks
`ModbusDialect` for a request, reads ``expected_length(request)`` bytes (the first
``EXCEPTION_LENGTH`` of them before the rest, since an exception reply is shorter) and hands
both to ``parse_response``, which either returns the payload or raises: nothing that fails a
check is ever acted on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from gatectl.config import ModbusBoardConfig
from gatectl.hw.serial.dialect import Dialect, FrameError, Refused, hexs

READ_COILS = 0x01
READ_INPUTS = 0x02
WRITE_COIL = 0x05

COIL_ON = 0xFF00
COIL_OFF = 0x0000
ALL_COILS = 0x00FF  # Waveshare: FC 05 on this address switches every relay
FLASH_ON_BASE = 0x0200  # Waveshare: on now, off by the board after value x 100 ms
FLASH_OFF_BASE = 0x0400  # Waveshare: off now, on by the board after value x 100 ms
FLASH_MAX_UNITS = 0xFFFF

EXCEPTION_LENGTH = 5  # addr, fc | 0x80, code, CRC lo, CRC hi
MAX_READ_BITS = 2000  # Modbus limit for FC 01/02

NO_RETRY_CODES = frozenset({0x01, 0x02, 0x03})  # deterministic refusals: asking again cannot help
UNSUPPORTED_CODES = frozenset({0x01, 0x02})  # no such function / address on this board

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "slave device failure",
    0x05: "acknowledge",
    0x06: "slave device busy",
}


class ModbusException(Refused):
    """The board understood the request and refused it with a Modbus exception code."""

    def __init__(self, code: int, function: int = 0):
        self.code = code
        self.function = function
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        to = f" to function {function:02X}" if function else ""
        super().__init__(f"Modbus exception {code:02X} ({name}){to}")

    @property
    def final(self) -> bool:
        return self.code in NO_RETRY_CODES

    @property
    def unsupported(self) -> bool:
        return self.code in UNSUPPORTED_CODES


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001; sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC, low byte first: a complete RTU frame."""
    return body + crc16_modbus(body).to_bytes(2, "little")


def crc_ok(frame: bytes) -> bool:
    """True when the last two bytes are the CRC of the rest (a frame needs at least 4 bytes)."""
    return len(frame) >= 4 and crc16_modbus(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def _check_byte(name: str, value: int, hi: int = 0xFF) -> None:
    if not 0 <= value <= hi:
        raise ValueError(f"{name} {value} out of range 0..{hi}")


def _request(addr: int, fc: int, reg: int, value: int) -> bytes:
    _check_byte("address", addr)
    _check_byte("register", reg, 0xFFFF)
    _check_byte("value", value, 0xFFFF)
    return with_crc(struct.pack(">BBHH", addr, fc, reg, value))


def write_coil(addr: int, coil: int, on: bool) -> bytes:
    """FC 05: one relay on (FF00) or off (0000)."""
    return _request(addr, WRITE_COIL, coil, COIL_ON if on else COIL_OFF)


def write_all(addr: int, on: bool) -> bytes:
    """FC 05 on coil 0x00FF: every relay at once (Waveshare)."""
    return write_coil(addr, ALL_COILS, on)


def flash_units(seconds: float) -> int:
    """A duration in the board's 100 ms units, clamped to what the board accepts (1..65535)."""
    return min(max(round(seconds * 10), 1), FLASH_MAX_UNITS)


def flash_on(addr: int, channel0: int, seconds: float) -> bytes:
    """FC 05 on 0x0200 + channel: the board closes the relay and opens it itself after
    ``seconds`` (rounded to 100 ms), so a crash of gatectl cannot leave it closed."""
    return _request(addr, WRITE_COIL, FLASH_ON_BASE + channel0, flash_units(seconds))


def parse_flash_on(frame: bytes) -> tuple[int, float] | None:
    """(0-based channel, seconds) of a flash-on request, None for any other frame: what the demo
    and the benchmarks look for among the frames the driver wrote."""
    if len(frame) != 8 or frame[1] != WRITE_COIL:
        return None
    reg, value = struct.unpack(">HH", frame[2:6])
    if not FLASH_ON_BASE <= reg < FLASH_ON_BASE + 0x100:
        return None
    return reg - FLASH_ON_BASE, value / 10


def flash_off(addr: int, channel0: int, seconds: float) -> bytes:
    """FC 05 on 0x0400 + channel: the board opens the relay and closes it after ``seconds``."""
    return _request(addr, WRITE_COIL, FLASH_OFF_BASE + channel0, flash_units(seconds))


def _read_request(addr: int, fc: int, start: int, count: int) -> bytes:
    if not 1 <= count <= MAX_READ_BITS:
        raise ValueError(f"count {count} out of range 1..{MAX_READ_BITS}")
    return _request(addr, fc, start, count)


def read_coils(addr: int, start: int, count: int) -> bytes:
    """FC 01: relay states, as the board sees them (read-back after writes)."""
    return _read_request(addr, READ_COILS, start, count)


def read_inputs(addr: int, start: int, count: int) -> bytes:
    """FC 02: discrete (opto) inputs: door contacts, exit buttons, the fire alarm."""
    return _read_request(addr, READ_INPUTS, start, count)


def _read_count(request: bytes) -> int:
    return int.from_bytes(request[4:6], "big")


def expected_length(request: bytes) -> int:
    """Bytes of the normal reply to ``request`` (an exception reply is ``EXCEPTION_LENGTH``)."""
    fc = request[1]
    if fc in (READ_COILS, READ_INPUTS):
        return 5 + (_read_count(request) + 7) // 8
    if fc == WRITE_COIL:
        return len(request)  # the echo
    raise ValueError(f"no reply length known for function {fc:02X}")


def unpack_bits(data: bytes, count: int) -> list[bool]:
    """FC 01/02 payload to booleans: bit 0 of the first byte is coil/input ``start``."""
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


def pack_bits(bits: list[bool]) -> bytes:
    """Inverse of ``unpack_bits`` (what a board puts in an FC 01/02 reply)."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def parse_response(request: bytes, response: bytes) -> list[bool] | None:
    """Validate ``response`` against ``request``: the bits of an FC 01/02 reply, None for a
    confirmed FC 05 echo. Raises ModbusException for an exception reply and FrameError, with
    the reason, for anything else that is not exactly the reply this request asks for."""
    want = expected_length(request)
    n = len(response)
    seen = hexs(response)
    if n < EXCEPTION_LENGTH:
        raise FrameError(f"short reply: {n} of {want} bytes ({seen or 'nothing'})")
    if not crc_ok(response):
        if n < want:
            raise FrameError(f"short reply: {n} of {want} bytes ({seen})")
        raise FrameError(f"bad CRC in reply {seen}")
    addr, fc = response[0], response[1]
    if addr != request[0]:
        raise FrameError(f"reply from address {addr}, expected {request[0]} ({seen})")
    if fc == request[1] | 0x80:
        if n != EXCEPTION_LENGTH:
            raise FrameError(f"exception reply of {n} bytes, expected {EXCEPTION_LENGTH} ({seen})")
        raise ModbusException(response[2], request[1])
    if fc != request[1]:
        raise FrameError(f"reply with function {fc:02X} to function {request[1]:02X} ({seen})")
    if fc in (READ_COILS, READ_INPUTS) and response[2] != want - 5:
        raise FrameError(f"reply byte count {response[2]}, expected {want - 5} ({seen})")
    if n != want:
        raise FrameError(f"reply of {n} bytes, expected {want} ({seen})")
    if fc == WRITE_COIL:
        if response != request:
            raise FrameError(f"echo {seen} differs from request {hexs(request)}")
        return None
    return unpack_bits(response[3:-2], _read_count(request))


def request_length(head: bytes) -> int | None:
    """Length of a request from its first bytes, for a device framing what it receives: fixed
    8 bytes for FC 01/02/05/06, 9 + byte count for FC 0F/10 (None until that byte arrived),
    None for other functions (framed by silence)."""
    if len(head) < 2:
        return None
    fc = head[1]
    if fc in (READ_COILS, READ_INPUTS, WRITE_COIL, 0x06):
        return 8
    if fc in (0x0F, 0x10):
        return 9 + head[6] if len(head) > 6 else None
    return None


def read_reply(request: bytes, read: Callable[[int], bytes]) -> bytes:
    """Exception replies are 5 bytes: read those first, the rest only for a normal reply."""
    head = read(EXCEPTION_LENGTH)
    if len(head) < EXCEPTION_LENGTH or head[1] == request[1] | 0x80:
        return head
    return head + read(expected_length(request) - EXCEPTION_LENGTH)


class ModbusDialect(Dialect):
    """Relays are coils (FC 05, read back with FC 01), inputs are discrete inputs (FC 02)."""

    driver = "modbus"
    answers = True
    cfg: ModbusBoardConfig

    def __init__(self, cfg: ModbusBoardConfig):
        self.cfg = cfg
        self.hw_pulse = cfg.hw_pulse
        self.inputs = cfg.inputs

    def switch(self, channel: int, on: bool) -> bytes:
        return write_coil(self.cfg.address, channel, on)

    def all_off(self) -> bytes:
        return write_all(self.cfg.address, False)

    def flash(self, channel: int, seconds: float) -> tuple[bytes, float]:
        return flash_on(self.cfg.address, channel, seconds), flash_units(seconds) / 10

    def read_relays(self) -> bytes:
        return read_coils(self.cfg.address, 0, self.cfg.channels)

    def read_inputs(self) -> bytes:
        return read_inputs(self.cfg.address, 0, self.cfg.inputs)

    reply_length = staticmethod(expected_length)
    read_reply = staticmethod(read_reply)
    def parse(self, request: bytes, reply: bytes) -> list[bool] | None:
        return parse_response(request, reply)

    def describe(self, request: bytes) -> str:
        return f"{hexs(request)} to address {self.cfg.address}"


DIALECT = ModbusDialect
