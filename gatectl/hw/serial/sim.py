"""A simulated relay board on a pty, for tests and the bench: Modbus RTU (Waveshare map) or LCUS.

The real driver opens ``.port`` (the pty's slave side, e.g. /dev/pts/5) with pyserial exactly
as it opens /dev/ttyUSB0, so tests exercise the real framing, timeouts and reconnects. The
simulator behaves like a board, not like a mock. `SimulatedBoard` is the board itself (pty,
relays, inputs, the timers of board-timed pulses, the wire time of every byte); a `SimDialect`
is what it does with the bytes it receives. `ModbusSim`:

- requests are framed by the length their function implies, otherwise by a silence gap;
- a bad CRC or another unit's address gets no reply at all (a real board stays silent);
- FC 01 read coils, FC 02 read discrete inputs, FC 05 on a coil (FF00/0000, echo), on 0x00FF
  (all relays), flash-on 0x0200 + ch and flash-off 0x0400 + ch with value x 100 ms timers the
  simulator runs itself (a new flash re-arms the timer; a plain write cancels it);
- anything else gets a Modbus exception: 01 illegal function, 02 illegal data address,
  03 illegal data value; address 0 (broadcast) writes are applied without a reply;
- with ``baud`` set, each reply is delayed by the wire time of request + reply at that rate
  (10 bits per byte): a pty delivers bytes instantly, a 9600 baud line does not.

Faults for tests and the bench (``inject``) act on the next matching request(s):
"timeout" - the request is lost (not executed, no reply); "exception" - the board is busy
(exception 06, not executed); "garbage", "bad_crc", "short", "foreign" - the request is
executed but its reply arrives as random bytes, with a corrupted CRC, truncated, or from
another address. `LcusSim` applies LCUS ``A0 ch op sum`` frames, silently. A new dialect's
simulator is a `SimDialect` (``SimulatedBoard(dialect=...)``), and one line in ``SIMULATED``
for the console.

Standalone: ``gatectl board-sim [--address 1 --channels 8 --link ./relay0]`` (also ``python -m
gatectl.hw.serial.sim``) prints the pty path and the relay states on every change until Ctrl-C,
SIGTERM or ``quit``; its console (stdin) sets the inputs a wired board would report, e.g.
``in 1 on`` (a door contact closing), ``in 3 toggle`` (the fire alarm), ``status``.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import struct
import sys
import threading
import time
import tty
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol, TextIO

from gatectl.config.hardware import BoardBase
from gatectl.core.argtypes import number_in
from gatectl.core.console import serve_console
from gatectl.core.safe_text import shown
from gatectl.hw.serial import lcus, modbus
from gatectl.hw.serial.dialect import frame_gap_s, wire_time_s

FAULTS = ("timeout", "garbage", "bad_crc", "short", "foreign", "exception")
BUSY = 0x06
MIN_GAP_S = 0.002  # silence that ends a frame of unknown length on a pty
IDLE_S = 0.05  # longest select() wait: how late stop() and timers are noticed when idle


class SimDialect(Protocol):
    """What a simulated board of one dialect does with what arrives on its line."""

    def take_frame(self, buf: bytearray, silent: bool) -> bytes | None:
        """Cut one frame off ``buf`` (``silent``: the line was quiet for a frame gap), or None."""

    def handle(self, board: SimulatedBoard, frame: bytes) -> bytes | None:
        """Act on one frame; the reply to send, or None to stay silent."""

    def inject(self, kind: str, count: int, function: int | None) -> None:
        """Misbehave on the next ``count`` requests; ValueError for a fault it cannot make."""


class SimulatedBoard:
    """A relay board behind a pty; see the module docstring."""

    def __init__(self, address: int = 1, channels: int = 8, inputs: int = 8,
                 clock: Callable[[], float] = time.monotonic, baud: int | None = None,
                 dialect: str | SimDialect = "modbus",
                 on_change: Callable[[list[bool]], None] | None = None, record: bool = True):
        """``address``: the unit a bus dialect (Modbus) answers to. ``dialect``: a name in
        ``SIMULATED`` or a `SimDialect`. ``record=False`` keeps ``received`` empty, for a bench
        tool left running for days."""
        if isinstance(dialect, str):
            if dialect not in SIMULATED:
                raise ValueError(f"dialect must be one of {', '.join(SIMULATED)}, not {dialect!r}")
            dialect = SIMULATED[dialect]()
        self.address = address
        self.channels = channels
        self.clock = clock
        self.baud = baud
        self.dialect = dialect
        self.on_change = on_change
        self.record = record
        self.received: list[tuple[float, bytes]] = []  # (clock(), frame) of every frame read
        self._gap_s = max(frame_gap_s(baud or 9600), MIN_GAP_S)
        self._coils = [False] * channels
        self._inputs = [False] * inputs
        self._timers: dict[int, tuple[float, bool]] = {}  # channel -> (clock() due, state then)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes pass as they are
        # we keep the slave open so the pty survives the driver closing and reopening it
        self.port = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._serve, name="board-sim", daemon=True)
        self._thread.start()

    # ---- test and bench hooks ----------------------------------------------------------

    def coils(self) -> list[bool]:
        with self._lock:
            return list(self._coils)

    def set_coil(self, channel: int, on: bool) -> None:
        """What the relays were left at (a previous run, a power glitch): start-up tests."""
        self.apply({channel: on})

    def set_input(self, index: int, active: bool) -> None:
        """What a wired contact would report."""
        with self._lock:
            self._inputs[index] = active

    def input_states(self) -> list[bool]:
        with self._lock:
            return list(self._inputs)

    def describe(self) -> str:
        """Relays and inputs as the board labels them (1-based), for the console."""
        relays = " ".join(f"{i + 1}:{'ON' if on else 'off'}" for i, on in enumerate(self.coils()))
        inputs = " ".join(
            f"{i + 1}:{'ACTIVE' if on else 'off'}" for i, on in enumerate(self.input_states())
        )
        return f"relays {relays} | inputs {inputs or 'none'}"

    def inject(self, kind: str, count: int = 1, function: int | None = None) -> None:
        """Misbehave on the next ``count`` requests (of ``function`` only, if given)."""
        self.dialect.inject(kind, count, function)

    def frames(self, since: float = float("-inf")) -> list[bytes]:
        """Frames received at or after ``since`` (a clock() value)."""
        return [f for t, f in list(self.received) if t >= since]

    def stop(self) -> None:
        """Stop serving and close the pty: to the driver this looks like an unplugged adapter."""
        self._stop.set()
        self._thread.join(5)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    # ---- what a dialect's simulator acts on ----------------------------------------------

    def apply(self, states: dict[int, bool], cancel_timers: bool = True) -> None:
        """Switch relays (``states``: channel -> on); a plain write ends a board-timed pulse."""
        with self._lock:
            if cancel_timers:
                for channel in states:
                    self._timers.pop(channel, None)
            changed = any(self._coils[c] != on for c, on in states.items())
            for c, on in states.items():
                self._coils[c] = on
            snapshot = list(self._coils)
        if changed and self.on_change is not None:
            self.on_change(snapshot)

    def flash(self, channel: int, on: bool, seconds: float) -> None:
        """Switch ``channel`` to ``on`` now and back after ``seconds`` (the board's own timer; a
        new flash re-arms it)."""
        with self._lock:
            self._timers[channel] = (self.clock() + seconds, not on)
        self.apply({channel: on}, cancel_timers=False)

    def wire_wait(self, nbytes: int) -> None:
        """Take as long as ``nbytes`` take on the configured line (nothing at pty speed)."""
        if self.baud:
            time.sleep(wire_time_s(nbytes, self.baud))

    # ---- the board ---------------------------------------------------------------------

    def _serve(self) -> None:
        buf = bytearray()
        last_rx = 0.0
        while not self._stop.is_set():
            wait = min(self._next_timer() - self.clock(), self._gap_s if buf else IDLE_S)
            ready, _, _ = select.select([self._master], [], [], max(wait, 0.0))
            if ready:
                try:
                    buf += os.read(self._master, 4096)
                except OSError:  # pty gone under us: nothing more to serve
                    return
                last_rx = time.monotonic()
            self._fire_timers()
            silent = time.monotonic() - last_rx >= self._gap_s
            while (frame := self.dialect.take_frame(buf, silent)) is not None:
                if self.record:
                    self.received.append((self.clock(), frame))
                reply = self.dialect.handle(self, frame)
                if reply:
                    self.wire_wait(len(reply))
                    try:
                        os.write(self._master, reply)
                    except OSError:
                        pass  # stopped meanwhile

    def _next_timer(self) -> float:
        with self._lock:
            return min((t for t, _ in self._timers.values()), default=float("inf"))

    def _fire_timers(self) -> None:
        now = self.clock()
        with self._lock:
            due = {c: state for c, (t, state) in self._timers.items() if t <= now}
            for c in due:
                del self._timers[c]
        if due:
            self.apply(due, cancel_timers=False)


def _cut(buf: bytearray, n: int | None, silent: bool) -> bytes | None:
    """One frame off ``buf``: its known length ``n``, or everything after a silence."""
    if n is not None and len(buf) >= n:
        frame = bytes(buf[:n])
    elif silent and buf:
        frame = bytes(buf)
    else:
        return None
    del buf[:len(frame)]
    return frame


class ModbusSim:
    """A Waveshare-style Modbus RTU relay board; see the module docstring."""

    def __init__(self, all_coil: bool = True, seed: int = 0):
        """``all_coil=False`` models boards without the Waveshare all-relays coil 0x00FF (LCTech
        clones): FC 05 on it is refused with exception 02, as an unknown address would be."""
        self.all_coil = all_coil
        self._faults: list[list] = []  # [kind, remaining, function or None]
        self._rng = random.Random(seed)  # garbage replies are reproducible
        self._lock = threading.Lock()

    def inject(self, kind: str, count: int, function: int | None) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.append([kind, count, function])

    def take_frame(self, buf: bytearray, silent: bool) -> bytes | None:
        return _cut(buf, modbus.request_length(bytes(buf)), silent)

    def handle(self, board: SimulatedBoard, frame: bytes) -> bytes | None:
        if not modbus.crc_ok(frame) or frame[0] not in (board.address, 0):
            return None  # line noise or another unit's request: a board stays silent
        fc = frame[1]
        fault = self._take_fault(fc) if frame[0] else None
        if fault == "timeout":
            return None
        board.wire_wait(len(frame))  # the request's own transmission
        if fault == "exception":
            reply = self._exception(board, fc, BUSY)
        else:
            reply = self._execute(board, frame)
        if frame[0] == 0:
            return None  # broadcast: applied, never answered
        return self._corrupt(board, reply, fault)

    def _take_fault(self, fc: int) -> str | None:
        with self._lock:
            for fault in self._faults:
                kind, _, function = fault
                if function is None or function == fc:
                    fault[1] -= 1
                    if fault[1] <= 0:
                        self._faults.remove(fault)
                    return kind
        return None

    @staticmethod
    def _exception(board: SimulatedBoard, fc: int, code: int) -> bytes:
        return modbus.with_crc(bytes([board.address, fc | 0x80, code]))

    def _execute(self, board: SimulatedBoard, frame: bytes) -> bytes:
        """Apply one valid request; the reply (echo, data or exception)."""
        fc = frame[1]
        if fc not in (modbus.READ_COILS, modbus.READ_INPUTS, modbus.WRITE_COIL) or len(frame) != 8:
            return self._exception(board, fc, 0x01)
        reg, value = struct.unpack(">HH", frame[2:6])
        if fc == modbus.WRITE_COIL:
            code = self._write(board, reg, value)
            return self._exception(board, fc, code) if code else frame
        bits = board.coils() if fc == modbus.READ_COILS else board.input_states()
        if not 1 <= value <= modbus.MAX_READ_BITS:
            return self._exception(board, fc, 0x03)
        if reg + value > len(bits):
            return self._exception(board, fc, 0x02)
        data = modbus.pack_bits(bits[reg:reg + value])
        return modbus.with_crc(bytes([board.address, fc, len(data)]) + data)

    def _write(self, board: SimulatedBoard, reg: int, value: int) -> int:
        """FC 05 on the Waveshare address map; 0 when done, else the exception code."""
        flash_on = modbus.FLASH_ON_BASE <= reg < modbus.FLASH_ON_BASE + board.channels
        flash_off = modbus.FLASH_OFF_BASE <= reg < modbus.FLASH_OFF_BASE + board.channels
        if flash_on or flash_off:
            if value == 0:
                return 0x03
            channel = reg - (modbus.FLASH_ON_BASE if flash_on else modbus.FLASH_OFF_BASE)
            board.flash(channel, flash_on, value / 10)
            return 0
        if reg >= board.channels and not (reg == modbus.ALL_COILS and self.all_coil):
            return 0x02
        if value not in (modbus.COIL_ON, modbus.COIL_OFF):
            return 0x03
        targets = range(board.channels) if reg == modbus.ALL_COILS else [reg]
        board.apply({c: value == modbus.COIL_ON for c in targets})
        return 0

    def _corrupt(self, board: SimulatedBoard, reply: bytes, fault: str | None) -> bytes:
        if fault == "garbage":
            return bytes(self._rng.randrange(256) for _ in reply)
        if fault == "bad_crc":
            return reply[:-1] + bytes([reply[-1] ^ 0xFF])
        if fault == "short":
            return reply[:max(len(reply) - 3, 1)]
        if fault == "foreign":
            return modbus.with_crc(bytes([board.address % 255 + 1]) + reply[1:-2])
        return reply


class LcusSim:
    """An LCUS / CH340 module: applies ``A0 ch op sum`` frames and never says a word."""

    def inject(self, kind: str, count: int, function: int | None) -> None:
        raise ValueError("faults are simulated for Modbus only (LCUS never replies)")

    def take_frame(self, buf: bytearray, silent: bool) -> bytes | None:
        while buf and buf[0] != lcus.HEAD:
            del buf[0]  # resynchronise on the header byte
        return _cut(buf, lcus.FRAME_LENGTH, silent)

    def handle(self, board: SimulatedBoard, frame: bytes) -> None:
        try:
            channel1, on = lcus.parse_lcus_frame(frame)
        except lcus.LcusFrameError:
            return  # a module ignores what it cannot parse
        if 1 <= channel1 <= board.channels:
            board.apply({channel1 - 1: on})


# the simulators `gatectl board-sim --dialect` offers
SIMULATED: dict[str, Callable[[], SimDialect]] = {"modbus": ModbusSim, "lcus": LcusSim}


CONSOLE_HELP = (
    "console: in N|NAME on|off|toggle (input N as the board labels it, 1 = the config's index 0; "
    "NAME: an [[inputs]] name with --board), relay N on|off, status, help, quit"
)
DEFAULTS = {"dialect": "modbus", "address": 1, "channels": 8, "inputs": 8, "baud": 9600}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The bench tool's options, for `python -m gatectl.hw.serial.sim` and `gatectl board-sim`."""
    ap.add_argument("--address", type=number_in(1, 255, int), metavar="1..255",
                    help="Modbus unit address (default 1)")
    ap.add_argument("--channels", type=number_in(1, 32, int), metavar="1..32",
                    help="relays (default 8)")
    ap.add_argument("--inputs", type=number_in(0, 32, int), metavar="0..32",
                    help="discrete inputs: door contacts, exit buttons, fire alarm (default 8)")
    ap.add_argument("--baud", type=number_in(0, 921600, int), metavar="BAUD",
                    help="reply timing of this line speed (0: as fast as the pty; default 9600)")
    ap.add_argument("--dialect", choices=list(SIMULATED),
                    help="how the board speaks (default modbus)")
    ap.add_argument("--link", type=Path, metavar="PATH",
                    help="also make PATH a symlink to the pty, for a stable `port =` in the config")


def fill_defaults(args: argparse.Namespace, board: BoardBase | None = None) -> None:
    """Options not given: from ``board`` (a config's [[boards]] entry, so the simulator answers as
    the configured board would: its dialect, address, relays, inputs, baud), else the DEFAULTS."""
    given = {} if board is None else {k: v for k, v in board.model_dump().items() if k in DEFAULTS}
    if board is not None and board.driver in SIMULATED:
        given["dialect"] = board.driver
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, given.get(key, default))


def console_command(sim: SimulatedBoard, line: str,
                    names: dict[str, int] | None = None) -> str | None:
    """One console line typed by the technician; the answer to print, or None for `quit`.

    Inputs are what the wired contacts report (door contact, exit button, fire alarm): typing
    `in 3 on` (or `in fire on` with ``names`` {"fire": 2}) is the fire panel closing its contact
    on input 3."""
    words = line.split()
    if names and len(words) == 3 and words[0].lower() in ("in", "input") and words[1] in names:
        words[1] = str(names[words[1]] + 1)
    if not words:
        return ""
    cmd, rest = words[0].lower(), words[1:]
    if cmd in ("quit", "exit"):
        return None
    if cmd == "help":
        return CONSOLE_HELP
    if cmd == "status":
        return sim.describe()
    if cmd in ("in", "input", "relay") and len(rest) == 2 and rest[0].isdigit():
        n, state = int(rest[0]), rest[1].lower()
        count = len(sim.input_states()) if cmd != "relay" else sim.channels
        if not 1 <= n <= count:
            return (
                f"error: {cmd} {n}: the board has {cmd if cmd == 'relay' else 'input'}s 1..{count}"
            )
        current = sim.input_states()[n - 1] if cmd != "relay" else sim.coils()[n - 1]
        wanted = {"on": True, "off": False, "1": True, "0": False, "toggle": not current}.get(state)
        if wanted is None:
            return f"error: {cmd} {n}: say on, off or toggle (got {shown(state, 20)})"
        if cmd == "relay":
            sim.set_coil(n - 1, wanted)
        else:
            sim.set_input(n - 1, wanted)
        return sim.describe()
    return f"error: cannot read {shown(line.strip(), 60)}; {CONSOLE_HELP}"


def serve(args: argparse.Namespace, stdin: TextIO | None = None,
          names: dict[str, tuple[int, str]] | None = None) -> int:
    """Serve a simulated board until Ctrl-C, SIGTERM or `quit`, printing every change and
    obeying console commands read from ``stdin`` (a closed stdin just ends the console).
    ``names``: input name -> (0-based index, role), the config's [[inputs]] on this board."""
    stdin = sys.stdin if stdin is None else stdin
    fill_defaults(args)
    indices = {name: index for name, (index, _) in (names or {}).items()}
    stop = threading.Event()

    def show(coils: list[bool]) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        states = " ".join(f"{i + 1}:{'ON' if on else 'off'}" for i, on in enumerate(coils))
        print(f"{stamp} {states}", flush=True)

    sim = SimulatedBoard(args.address, args.channels, args.inputs, baud=args.baud or None,
                         dialect=args.dialect, on_change=show, record=False)
    linked = False
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.link:
            if args.link.exists() and not args.link.is_symlink():
                print(
                    f"gatectl board-sim: --link {args.link}: exists and is not a symlink; "
                    "not replacing it",
                    file=sys.stderr,
                )
                return 2
            args.link.unlink(missing_ok=True)
            args.link.symlink_to(sim.port)
            linked = True
        print(f"simulated {args.dialect} relay board on {sim.port}"
              + (f" (link {args.link})" if args.link else "")
              + f", address {args.address}, {args.channels} relays, {args.inputs} inputs;"
              + " Ctrl-C stops",
              flush=True)
        print(CONSOLE_HELP, flush=True)
        if names:
            print("inputs: " + ", ".join(f"{i + 1} {n} ({role})" for n, (i, role) in sorted(
                names.items(), key=lambda x: x[1][0])), flush=True)
        show(sim.coils())

        serve_console(stdin, lambda line: console_command(sim, line, indices), stop,
                      "board-sim-console")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        sim.stop()
        if linked and args.link.is_symlink():
            args.link.unlink()


def main(argv: list[str] | None = None) -> int:
    """Bench tool: serve a simulated board until Ctrl-C, printing every coil change."""
    ap = argparse.ArgumentParser(prog="python -m gatectl.hw.serial.sim",
                                 description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    return serve(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
