"""The byte pipe libosdp polls: an ``osdp.Channel`` over a serial port or a pty's file descriptor.

libosdp calls ``read``/``write`` from inside ``refresh()``, on the thread that calls it, so a
channel must never block: reads return what is there, writes what the line took. An OS error
(an unplugged USB adapter) is not raised into the C library; the channel remembers it and the
panel thread reopens the port.
"""

from __future__ import annotations

import os
import time

import osdp
import serial

READ_MAX = 512  # bytes taken per read: an OSDP packet is at most 1440, libosdp asks in pieces


class SerialChannel(osdp.Channel):
    """The control panel's side: the RS-485 adapter, opened with pyserial like a relay board."""

    def __init__(self, port: str, baud: int):
        super().__init__()
        self.port = serial.Serial(port, baud, timeout=0, write_timeout=0, exclusive=True)
        self.error: str | None = None
        self.rx_bytes = 0  # everything read: a bus that answers at all (wrong key vs no reader)

    def read(self, max_bytes: int) -> bytes:
        if self.error is not None:
            return b""
        try:
            data = bytes(self.port.read(min(max_bytes, READ_MAX)))
        except (OSError, serial.SerialException) as exc:
            self.error = f"read failed: {exc.__class__.__name__}"
            return b""
        self.rx_bytes += len(data)
        return data

    def write(self, buf: bytes) -> int:
        if self.error is not None:
            return 0
        try:
            return int(self.port.write(buf) or 0)
        except serial.SerialTimeoutException:
            return 0  # the line is busy: libosdp writes the rest later
        except (OSError, serial.SerialException) as exc:
            self.error = f"write failed: {exc.__class__.__name__}"
            return 0

    def flush(self) -> None:
        if self.error is None:
            try:
                self.port.reset_input_buffer()
            except (OSError, serial.SerialException) as exc:
                self.error = f"flush failed: {exc.__class__.__name__}"

    def close(self) -> None:
        try:
            self.port.close()
        except (OSError, serial.SerialException):
            pass


class FdChannel(osdp.Channel):
    """The simulated reader's side: the master end of a pty, non-blocking. With ``baud`` set,
    every byte costs its wire time (10 bits per byte) in both directions, which a pty would
    otherwise deliver instantly - the bench's 9600 vs 115200 baud."""

    def __init__(self, fd: int, baud: int | None = None):
        super().__init__()
        self.fd = fd
        self.baud = baud
        os.set_blocking(fd, False)

    def _wire(self, n: int) -> None:
        if self.baud and n:
            # the simulated device's own thread waits as the line would
            time.sleep(n * 10 / self.baud)

    def read(self, max_bytes: int) -> bytes:
        try:
            data = os.read(self.fd, min(max_bytes, READ_MAX))
        except (BlockingIOError, OSError):
            return b""
        self._wire(len(data))
        return data

    def write(self, buf: bytes) -> int:
        self._wire(len(buf))
        try:
            return os.write(self.fd, buf)
        except (BlockingIOError, OSError):
            return 0

    def flush(self) -> None:
        """A pty has nothing to flush."""
