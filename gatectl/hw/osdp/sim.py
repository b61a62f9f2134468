"""A simulated OSDP card and PIN reader on a pty, for tests, the bench and the demo.

libosdp's own peripheral device (PD) - the same C code as in many real readers' firmware -
runs behind the master side of a pty; the control panel opens ``.port`` (the slave side, e.g.
/dev/pts/5) with pyserial exactly as it opens /dev/ttyUSB0, so tests exercise the real framing,
Secure Channel handshake and polling. The reader reports what a person does at it (``card``,
``keys``) and what happens to it (``tamper``), and records the LED and buzzer commands it gets.
With ``baud`` set, each byte costs its wire time at that rate (a pty is otherwise instant).

Standalone: ``gatectl reader-sim --scbk HEX [--address 0 --baud 9600 --link ./reader0]`` prints
the pty path and every LED/buzzer command until Ctrl-C; its console takes ``card 26 1a2b3c``,
``pin 1234``, ``tamper on|off``, ``quit``.
"""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Callable
from typing import Any

import osdp

from gatectl.hw.osdp.channel import FdChannel

CAPABILITIES = [
    (osdp.Capability.LEDControl, 1, 1),
    (osdp.Capability.AudibleControl, 1, 1),
    (osdp.Capability.CardDataFormat, 1, 1),
    (osdp.Capability.CommunicationSecurity, 1, 1),
]


class SimulatedReader:
    """One reader at ``address`` holding ``scbk`` (None: no Secure Channel)."""

    def __init__(self, address: int = 0, scbk: bytes | None = None, baud: int | None = None,
                 install_mode: bool = False,
                 on_command: Callable[[dict[str, Any]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.address = address
        self.clock = clock
        self.on_command = on_command
        self.commands: list[tuple[float, dict[str, Any]]] = []  # (clock(), command) received
        self._lock = threading.Lock()
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass as they are
        # the slave stays open here so the pty survives the panel closing and reopening it
        self.port = os.ttyname(self._slave)
        flags = [osdp.LibFlag.InstallMode] if install_mode else []
        info = osdp.PDInfo(address, FdChannel(self._master, baud), scbk=scbk,
                           name=f"sim-{address}", flags=flags)
        self._pd = osdp.PeripheralDevice(info, osdp.PDCapabilities(CAPABILITIES),
                                         log_level=osdp.LogLevel.Emergency,
                                         command_handler=self._command)
        self._pd.start()

    def _command(self, command: dict[str, Any]) -> tuple[int, None]:
        with self._lock:
            self.commands.append((self.clock(), dict(command)))
        if self.on_command is not None:
            self.on_command(command)
        return 0, None

    # ---- what happens at the reader ----------------------------------------------------

    def card(self, value: int, bits: int = 26) -> None:
        """A card of ``bits`` bits whose number is ``value`` (Wiegand raw format)."""
        nbytes = (bits + 7) // 8
        data = (value << (nbytes * 8 - bits)).to_bytes(nbytes, "big")
        self._pd.submit_event({"event": osdp.Event.CardRead, "reader_no": 0,
                               "format": osdp.CardFormat.Wiegand, "direction": 0,
                               "length": bits, "data": data})

    def keys(self, text: str) -> None:
        """Keys pressed one after the other: digits, ``*`` (clear), ``#`` (enter)."""
        for ch in text:
            code = {"#": 0x0D, "*": 0x7F}.get(ch, ord(ch))
            self._pd.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0,
                                   "data": bytes([code])})

    def tamper(self, on: bool) -> None:
        """The case opened (or closed again): a local status report with tamper set."""
        self._pd.submit_event({"event": osdp.Event.Status,
                               "type": osdp.StatusReportType.Local,
                               "report": bytes([1 if on else 0, 0])})

    # ---- what the panel did --------------------------------------------------------------

    def secure(self) -> bool:
        return bool(self._pd.is_sc_active())

    def received(self, since: float = float("-inf")) -> list[dict[str, Any]]:
        with self._lock:
            return [c for t, c in self.commands if t >= since]

    def silence(self) -> None:
        """The reader stops answering (its cable cut) while the port stays: the panel must
        notice by polling alone."""
        if self._pd.thread is not None:
            self._pd.stop()

    def stop(self) -> None:
        """Silence the reader and close the pty (to the panel: an unplugged adapter)."""
        self.silence()
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
