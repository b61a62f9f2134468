"""`gatectl reader-sim`: a simulated OSDP card and PIN reader on a pty (bench tool and demo).

The reader is libosdp's own peripheral device (`gatectl.hw.osdp.sim`); point a ``[[readers]]``
entry's ``port`` at the printed pty (or ``--link``) and type at its console what a person does
at the reader. ``--reader NAME`` takes address, baud and key from that config entry.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from gatectl.cli.common import AppFactory
from gatectl.config.readers import BAUDS, parse_scbk
from gatectl.core.console import serve_console
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown

CONSOLE_HELP = ("console: `card BITS HEX` (e.g. card 26 1a2b3c4), `pin 1234` (digits, then #), "
                "`tamper on|off`, `quit`")


def register(sub: Any) -> None:
    rs = sub.add_parser("reader-sim", help="a simulated OSDP card/PIN reader on a pty (bench "
                                           "tool)", epilog=CONSOLE_HELP)
    rs.add_argument("--reader", metavar="NAME",
                    help="answer as this [[readers]] entry (address, baud, SCBK)")
    rs.add_argument("--address", type=int, default=None, help="OSDP address (default 0)")
    rs.add_argument("--baud", type=int, choices=BAUDS, default=None,
                    help="simulated line speed (default: a pty's, instant)")
    rs.add_argument("--scbk", metavar="HEX", help="the reader's Secure Channel key, 32 hex "
                                                  "digits (default: no Secure Channel)")
    rs.add_argument("--link", type=Path, metavar="PATH", help="a symlink to the pty")
    rs.set_defaults(func=cmd_reader_sim)


def console_command(reader: Any, line: str) -> str | None:
    """One console line; the answer to print, or None for `quit`."""
    words = line.split()
    if not words:
        return ""
    cmd, rest = words[0].lower(), words[1:]
    if cmd in ("quit", "exit"):
        return None
    try:
        if cmd == "card" and len(rest) == 2:
            bits, value = int(rest[0]), int(rest[1], 16)
            if not 1 <= bits <= 128 or value >> bits:
                return f"error: card: {shown(rest[1], 40)} does not fit {bits} bits (1..128)"
            reader.card(value, bits)
            return f"card {bits} bits {value:x} presented"
        if cmd == "pin" and len(rest) == 1 and rest[0].isdigit() and len(rest[0]) <= 12:
            reader.keys(rest[0] + "#")
            return f"PIN of {len(rest[0])} digits entered"
        if cmd == "tamper" and rest in (["on"], ["off"]):
            reader.tamper(rest[0] == "on")
            return f"tamper {rest[0]}"
    except ValueError:
        pass
    return f"error: cannot read {shown(line.strip(), 60)}; {CONSOLE_HELP}"


def cmd_reader_sim(args: argparse.Namespace, app_factory: AppFactory,
                   stdin: TextIO | None = None) -> int:
    from gatectl.hw.osdp.sim import SimulatedReader

    address, baud, key = args.address, args.baud, None
    if args.reader:
        cfg = args.load_config()
        entry = next((r for r in cfg.readers if r.name == args.reader), None)
        if entry is None:
            raise UsageError(f"--reader: no reader '{shown(args.reader, 40)}' in the config")
        address = entry.address if address is None else address
        baud = entry.baud if baud is None else baud
        try:
            key = entry.key()
        except ValueError as exc:
            raise UsageError(f"--reader {entry.name}: {exc}") from None
    if args.scbk:
        try:
            key = parse_scbk(args.scbk, "--scbk")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if address is not None and not 0 <= address <= 126:
        raise UsageError("--address: an OSDP address is 0..126")
    stop = threading.Event()

    def show(command: dict) -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        print(f"{stamp} {command}", flush=True)

    reader = SimulatedReader(address or 0, key, baud, on_command=show)
    linked = False
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if args.link:
            if args.link.exists() and not args.link.is_symlink():
                raise UsageError(f"--link {args.link}: exists and is not a symlink")
            args.link.unlink(missing_ok=True)
            args.link.symlink_to(reader.port)
            linked = True
        print(f"simulated OSDP reader on {reader.port}, address {address or 0}, "
              f"{'Secure Channel' if key else 'no Secure Channel'}; Ctrl-C stops", flush=True)
        print(CONSOLE_HELP, flush=True)

        serve_console(stdin or sys.stdin, lambda line: console_command(reader, line), stop,
                      "reader-sim-console")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        reader.stop()
        if linked and args.link.is_symlink():
            args.link.unlink()
